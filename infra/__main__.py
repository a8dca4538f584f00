"""Entry point for `pulumi up -s <stack>` (Pulumi.yaml: `main: infra/`)."""

import sys
from pathlib import Path

# The Python language host runs this directory as a script, so only infra/ itself is on
# sys.path. Put the repository root first so `import infra` resolves to this package even
# when the project is not pip-installed into the Pulumi virtualenv.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi

from infra.config import ConfigError
from infra.program import deploy

try:
    deploy()
except ConfigError as exc:
    # The language host prints a RunError as its message alone; any other exception comes with
    # a traceback. A config mistake is the user's to fix, in one line naming the key.
    raise pulumi.RunError(str(exc)) from None
