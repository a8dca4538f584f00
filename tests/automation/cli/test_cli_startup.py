"""The CLI starts fast: loading it (and running --help) imports click, not pulumi, rich or providers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("pulumi", "pulumi_aws", "pulumi_github", "rich", "yaml", "boto3", "httpx")


def loaded_after(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys, json\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_module() -> None:
    assert loaded_after("import automation.cli") == []


def test_help_loads_no_heavy_module() -> None:
    code = (
        "import sys\nfrom automation.cli import cli\n"
        "try:\n    cli.main(['--help'], prog_name='python -m automation')\nexcept SystemExit:\n    pass\n"
        "for name in list(cli.commands):\n"
        "    try:\n        cli.main([name, '--help'])\n    except SystemExit:\n        pass"
    )
    assert loaded_after(code) == []


def test_the_seam_dataclasses_import_without_the_sdk() -> None:
    assert (
        loaded_after("import automation.engine.protocol, automation.engine.model, automation.engine.fake")
        == []
    )
