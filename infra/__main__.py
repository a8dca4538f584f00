"""Entry point for `pulumi up -s <stack>` (Pulumi.yaml: `main: infra/`)."""

import sys
from pathlib import Path

# The Python language host runs this directory as a script, so only infra/ itself is on
# sys.path. Put the repository root first so `import infra` resolves to this package even
# when the project is not pip-installed into the Pulumi virtualenv.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.program import deploy

deploy()
