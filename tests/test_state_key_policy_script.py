"""scripts/state-key-policy.py prints the key policy the bootstrap creates each state key with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.policies import state_key_policy

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "state-key-policy.py"
ADMIN = "arn:aws:iam::333333333333:role/AWSReservedSSO_Admin_0123"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_it_prints_the_environments_key_policy() -> None:
    result = run("prod", "--account", "333333333333", "--administrator", ADMIN)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == state_key_policy(
        partition="aws", account_id="333333333333", prefix="stageline-prod", administrators=[ADMIN]
    )


def test_a_bad_account_is_one_line_naming_the_option_and_exit_2() -> None:
    result = run("prod", "--account", "3333", "--administrator", ADMIN)
    assert result.returncode == 2
    assert result.stderr == "error: --account: '3333' is not a 12-digit account ID\n"
    assert result.stdout == ""
