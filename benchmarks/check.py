"""Wall time of `python -m automation check` over every stack, in a fresh interpreter.

This is the README's main job on a fresh machine (no cloud, no Pulumi CLI, no GitHub token), so the
figure includes everything a user waits for: interpreter start, imports, three offline renders and
the rules. Target: ≤ 10 s.

    python benchmarks/check.py            # one run
    python benchmarks/check.py --runs 3   # best and median of three

Exit status: 0 when the median is within the target, 1 when it is over, or `check`'s own exit
status when it failed to run (neither 0 nor 3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 10.0


def one_run() -> tuple[float, int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY", "GITHUB_TOKEN")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "automation", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()
    return elapsed, done.returncode, last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="how many fresh runs (default 1)")
    args = parser.parse_args()
    times = []
    for i in range(args.runs):
        elapsed, code, last = one_run()
        times.append(elapsed)
        print(f"run {i + 1}: {elapsed:.2f} s, exit {code}: {last}")
        if code not in (0, 3):
            return code
    best, median = min(times), statistics.median(times)
    verdict = "within" if median <= TARGET_SECONDS else "OVER"
    target = f"{verdict} the {TARGET_SECONDS:.0f} s target"
    print(f"check over all stacks: best {best:.2f} s, median {median:.2f} s ({target})")
    return 0 if median <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
