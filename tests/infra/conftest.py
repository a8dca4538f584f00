"""The program's tests. This file's folder is on the import path (pytest's default import mode puts a
conftest's folder there), so tests in sub-folders such as `config/` share `foundation_testkit`."""
