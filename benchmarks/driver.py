"""Driver benchmarks: CLI start-up, parallel drift, rollback decision time. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/driver.py

1. `python -m automation --help` wall time as a ratio to bare `python -c "import click"` (target <= 1.5x),
   and which heavy modules `--help` loads (must be none of pulumi_aws, pulumi_github).
2. `drift` over 3 and 30 stacks with the fake engine at 1 s simulated latency per stack, run through the
   CLI, parallel vs sequential (targets >= 2.5x at 3 stacks with the default --parallel, >= 6x at 30
   with --parallel 8).
3. The rollback decision over a 500-entry history (target <= 0.5 s): the pure plan, and the whole
   `rollback --dry-run` command through the CLI with the fake engine.

Takes about 45 s, most of it the sequential drift runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automation.engine.model import UpdateRecord

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wall(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    """Median wall time of `runs` runs of a fresh interpreter (after one warm-up run)."""
    subprocess.run(argv, cwd=ROOT, capture_output=True, check=True, env=env)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def bench_help(runs: int = 15) -> None:
    python = sys.executable
    bare = wall([python, "-c", "import click"], runs)
    helped = wall([python, "-m", "automation", "--help"], runs)
    ratio = helped / bare
    probe = (
        "import sys\nfrom automation.cli import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pulumi', 'pulumi_aws', 'pulumi_github', 'rich', 'yaml', 'boto3'})\n"
        "print(','.join(heavy) or 'none')"
    )
    loaded = subprocess.run([python, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    heavy = loaded.stdout.strip().splitlines()[-1]
    bytecode = (
        "off (PYTHONDONTWRITEBYTECODE: every run compiles the driver)"
        if os.environ.get("PYTHONDONTWRITEBYTECODE")
        else "on"
    )
    print("1. CLI start-up (median of", runs, "runs)")
    print(f"   python -c 'import click'        {bare * 1000:7.1f} ms")
    print(f"   python -m automation --help     {helped * 1000:7.1f} ms")
    print(f"   ratio                           {ratio:7.2f}x   (target <= 1.5x: {verdict(ratio <= 1.5)})")
    print(f"   bytecode cache                  {bytecode}")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # What a user's machine sees: compiled once, then cached (kept out of the tree).
        with tempfile.TemporaryDirectory() as cache:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPYCACHEPREFIX"] = cache
            cached = wall([python, "-m", "automation", "--help"], runs, env) / wall(
                [python, "-c", "import click"], runs, env
            )
        print(f"   ratio with a bytecode cache     {cached:7.2f}x")
    print(f"   heavy modules loaded by --help  {heavy}")


def drift_seconds(stacks: int, latency: float, parallel: int | None) -> float:
    from click.testing import CliRunner

    import automation.engine.protocol
    from automation.cli import cli
    from automation.engine.fake import FakeEngine

    fake = FakeEngine([f"s{i:02d}" for i in range(stacks)], latency=latency, project_dir=ROOT / "benchmarks")
    automation.engine.protocol.engine_factory = lambda: fake
    args = ["drift", "--all", "--json"] + (["--parallel", str(parallel)] if parallel else [])
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args)
    elapsed = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"drift benchmark failed: exit {result.exit_code}: {result.output}")
    return elapsed


def bench_drift(latency: float = 1.0) -> None:
    print(f"2. drift through the CLI, fake engine with {latency:g} s latency per stack")
    for stacks, parallel, target in ((3, None, 2.5), (30, 8, 6.0)):
        sequential = drift_seconds(stacks, latency, 1)
        concurrent = drift_seconds(stacks, latency, parallel)
        speedup = sequential / concurrent
        label = f"--parallel {parallel}" if parallel else f"default --parallel ({min(4, stacks)})"
        print(
            f"   {stacks:2d} stacks: sequential {sequential:6.2f} s, {label} {concurrent:5.2f} s, "
            f"speed-up {speedup:4.1f}x   (target >= {target:g}x: {verdict(speedup >= target)})"
        )


def history_of(count: int) -> list[UpdateRecord]:
    """A realistic history: promotions, failures, refreshes, previews, rollbacks."""
    from automation.engine.fake import make_release
    from automation.engine.model import UpdateRecord

    start = datetime(2024, 1, 1, tzinfo=UTC)
    records = []
    for version in range(1, count + 1):
        kind, result, message = "update", "succeeded", f"up prod @{version:07x}"
        if version % 7 == 0:
            kind = "refresh"
        elif version % 11 == 0:
            kind = "preview"
        elif version % 5 == 0:
            result = "failed"
        elif version % 13 == 0:
            message = f"rollback to v{version - 3} ({version - 3:07x})"
        begin = start + timedelta(hours=6 * version)
        records.append(
            UpdateRecord(
                version=version,
                kind=kind,
                result=result,
                start=begin,
                end=begin + timedelta(minutes=3),
                message=message,
                environment={"git.head": f"{version:040x}"},
                config={"stageline:release": make_release(f"r{version // 2}")},
            )
        )
    return records


def bench_rollback(entries: int = 500, repeats: int = 50) -> None:
    from click.testing import CliRunner

    import automation.engine.protocol
    from automation.cli import cli
    from automation.engine.fake import FakeEngine
    from automation.operate.rollback import plan_rollback

    history = history_of(entries)
    current = history[-1].release
    start = time.perf_counter()
    for _ in range(repeats):
        plan = plan_rollback(history, current, stack="prod")
    pure = (time.perf_counter() - start) / repeats

    fake = FakeEngine(("prod",), project_dir=ROOT)
    fake.stack("prod").history = list(history)
    fake.set_release("prod", current or {})
    automation.engine.protocol.engine_factory = lambda: fake
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["rollback", "prod", "--dry-run", "--json"])
    command = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"rollback benchmark failed: exit {result.exit_code}: {result.output}")
    print(f"3. rollback decision over a {entries}-entry history (target <= 0.5 s)")
    print(
        f"   plan_rollback (pure, mean of {repeats})      {pure * 1000:8.3f} ms -> v{plan.target.version}   "
        f"({verdict(pure <= 0.5)})"
    )
    print(
        f"   rollback prod --dry-run (CLI + fake)    {command * 1000:8.3f} ms   ({verdict(command <= 0.5)})"
    )


def main() -> None:
    began = time.perf_counter()
    bench_help()
    bench_drift()
    bench_rollback()
    print(f"total benchmark time {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
