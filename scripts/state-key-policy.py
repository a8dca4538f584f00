"""Print the key policy of one environment's state secrets key (docs/workflows.md, bootstrap step 3).

    python scripts/state-key-policy.py prod --account 333333333333 \\
        --administrator arn:aws:iam::333333333333:role/AWSReservedSSO_Admin_0123

Only that environment's deploy role (encrypt, decrypt) and preview role (decrypt) and the named
administrators may use the key. Exit codes: 0 printed, 2 bad arguments (one line naming the option).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.config import STACK_NAME_RE
from infra.policies import state_key_policy

ACCOUNT_RE = re.compile(r"^\d{12}$")
ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack")
    parser.add_argument("--account", required=True, help="the environment's 12-digit AWS account ID")
    parser.add_argument("--administrator", action="append", required=True, help="an IAM role or user ARN")
    parser.add_argument("--project", default="stageline")
    parser.add_argument("--partition", default="aws")
    args = parser.parse_args(argv)
    if not STACK_NAME_RE.match(args.stack):
        parser.exit(2, f"error: stack: {args.stack!r} is not a stack name\n")
    if not ACCOUNT_RE.match(args.account):
        parser.exit(2, f"error: --account: {args.account!r} is not a 12-digit account ID\n")
    for arn in args.administrator:
        if not ARN_RE.match(arn):
            parser.exit(2, f"error: --administrator: {arn!r} is not an IAM role or user ARN\n")
    document = state_key_policy(
        partition=args.partition,
        account_id=args.account,
        prefix=f"{args.project}-{args.stack}",
        administrators=args.administrator,
    )
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
