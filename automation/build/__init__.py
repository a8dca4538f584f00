"""Build once: package the application, upload it to the first stage, record the release.

`package` makes reproducible zip packages, `site` a frontend release, `publish` puts both in the first
stage's buckets (and checks images built elsewhere), `record` writes the release into the stack file,
and `run` is the command's whole flow. Build ranks above promotion: it reads the pipeline to find the
first stage, and hands promotion a release in that stage's stack file.
"""
