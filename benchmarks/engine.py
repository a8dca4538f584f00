"""The driver against the bare Pulumi CLI, both on the real engine and the stand-in cloud, side by side.

Three stacks of the real program are deployed into the stand-in cloud (tests/standin) from a fresh
copy of the repository; then each pair is run in turn (A B A B …) and the medians and their ratio
are printed:

* `python -m automation preview dev` vs `pulumi preview -s dev`                       (target ≤ 1.15x)
* `python -m automation drift dev staging prod` vs three sequential
  `pulumi refresh --preview-only`                                                       (target ≥ 2x faster)
  with the stand-in cloud answering at once, then with every cloud read taking each of `--latency`'s
  seconds (default 0.1 and 0.25). Answering at once, a refresh is CPU-bound (the CLI and two plugin
  processes), and three CPU-bound refreshes on 2 cores take at least half the time of one after
  another: 2x is the ceiling there, before any start-up. Against AWS a refresh waits on the network:
  the provider reads each resource with one or more API calls in sequence (a Lambda function is
  GetFunction, ListVersionsByFunction, GetFunctionCodeSigningConfig, …), tens of milliseconds each
* a no-op `python -m automation promote --yes` over three unchanged stacks vs the bare CLI calls
  it needs (per stack: `refresh --preview-only`, `preview`, `stack history`, `stack output`)
                                                                                        (target ≤ 1.3x)

It also prints the engine build times: warm (the cached build reused) and, with `--cold-build`, a
build into an empty engine cache with an empty Go build cache (the module cache is kept: the
downloads are not what is measured).

    export PATH="$(scripts/build-engine.sh):$PATH"
    python benchmarks/engine.py               # about 5 minutes on 2 cores
    python benchmarks/engine.py --runs 5 --cold-build

No figure is asserted anywhere; the targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.promote import health_server  # noqa: E402 - the same always-200 health endpoints
from tests.standin.harness import cli, copy_repo, environment  # noqa: E402
from tests.standin.provider import LATENCY_ENV  # noqa: E402

STACKS = ("dev", "staging", "prod")
Command = Sequence[str]


def run(command: Command, cwd: Path, env: dict[str, str], *, ok: Sequence[int] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in ok:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"error: {' '.join(command)} exited {done.returncode}: {' | '.join(tail)}")
    return seconds


def sequence(commands: Sequence[Command], cwd: Path, env: dict[str, str]) -> Callable[[], float]:
    return lambda: sum(run(c, cwd, env) for c in commands)


def paired(a: Callable[[], float], b: Callable[[], float], runs: int) -> tuple[list[float], list[float]]:
    a(), b()  # warm-up: plugin start-up caches, Python bytecode
    times_a, times_b = [], []
    for _ in range(runs):
        times_a.append(a())
        times_b.append(b())
    return times_a, times_b


def report(title: str, a: list[float], b: list[float], target: str, good: Callable[[float], bool]) -> None:
    ma, mb = statistics.median(a), statistics.median(b)
    ratio = ma / mb
    verdict = "meets" if good(ratio) else "MISSES"
    print(f"\n{title}")
    print(f"  driver   median {ma:6.2f} s  (min {min(a):.2f}, max {max(a):.2f})")
    print(f"  bare CLI median {mb:6.2f} s  (min {min(b):.2f}, max {max(b):.2f})")
    print(f"  ratio driver/CLI {ratio:.2f}x  ({verdict} the target {target})")


def latencies(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of seconds: {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("every latency must be above 0 (0 is always measured)")
    return values


def build_times(cold: bool) -> None:
    script = ROOT / "scripts" / "build-engine.sh"
    started = time.perf_counter()
    subprocess.run(["bash", str(script)], check=True, capture_output=True)
    print(f"\nengine build, warm (cached build reused): {time.perf_counter() - started:6.2f} s")
    if not cold:
        print("engine build, cold: not measured (pass --cold-build; about 5 minutes on 2 cores)")
        return
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as gocache:
        env = {**os.environ, "STAGELINE_ENGINE_CACHE": cache, "GOCACHE": gocache}
        started = time.perf_counter()
        subprocess.run(["bash", str(script)], check=True, capture_output=True, env=env)
        seconds = time.perf_counter() - started
        print(f"engine build, cold (empty engine and Go build caches): {seconds:6.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="paired runs per comparison (default 3)")
    parser.add_argument("--cold-build", action="store_true", help="also time a cold engine build")
    parser.add_argument(
        "--latency",
        type=latencies,
        default=(0.1, 0.25),
        help="comma-separated seconds each cloud read waits, one drift comparison each (default 0.1,0.25)",
    )
    args = parser.parse_args()
    if cli() is None:
        print('error: the Pulumi CLI is not on PATH (export PATH="$(scripts/build-engine.sh):$PATH")')
        return 2

    from moto.server import ThreadedMotoServer

    health_url, stop_health = health_server()
    # The driver's own AWS calls (alarm states, release copies) go to moto's server.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    moto_host, moto_port = moto.get_host_and_port()
    with tempfile.TemporaryDirectory(prefix="stageline-bench-") as tmp:
        base = Path(tmp)
        repo = copy_repo(base / "repo")
        (base / "cloud").mkdir()
        (base / "home").mkdir()
        env = environment(base / "home", base / "cloud")
        env.update(
            {
                "PULUMI_BACKEND_URL": (repo / ".stageline" / "state").as_uri(),
                "PULUMI_CONFIG_PASSPHRASE": "",
                "GITHUB_TOKEN": "ghp_stand_in_token",
                "STAGELINE_STANDIN_ENDPOINT": health_url,
                "AWS_ENDPOINT_URL": f"http://{moto_host}:{moto_port}",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "eu-west-1",
            }
        )
        (repo / ".stageline" / "state").mkdir(parents=True)
        driver = [sys.executable, "-m", "automation"]
        print(f"deploying {', '.join(STACKS)} into the stand-in cloud …")
        for stack in STACKS:
            seconds = run([*driver, "up", stack, "--yes", "--approve-iam"], repo, env)
            print(f"  up {stack}: {seconds:.1f} s")

        a, b = paired(
            sequence([[*driver, "preview", "dev"]], repo, env),
            sequence([["pulumi", "preview", "-s", "dev"]], repo, env),
            args.runs,
        )
        report("preview dev", a, b, "≤ 1.15x", lambda r: r <= 1.15)

        for latency in (0.0, *args.latency):
            slow = {**env, LATENCY_ENV: str(latency)}
            a, b = paired(
                sequence([[*driver, "drift", *STACKS]], repo, slow),
                sequence([["pulumi", "refresh", "--preview-only", "-s", s] for s in STACKS], repo, slow),
                args.runs,
            )
            where = (
                f"each cloud read takes {latency * 1000:.0f} ms, as an AWS API round trip does"
                if latency
                else "the stand-in cloud answers at once: CPU-bound on this machine's cores"
            )
            report(f"drift over three stacks ({where})", a, b, "≤ 0.5x (≥ 2x faster)", lambda r: r <= 0.5)

        # What a no-op stage needs from the engine: the drift gate (a preview-only refresh), the
        # preview, the release in history, and the outputs its checks read.
        bare = []
        for stack in STACKS:
            bare += [
                ["pulumi", "refresh", "--preview-only", "-s", stack],
                ["pulumi", "preview", "-s", stack],
                ["pulumi", "stack", "history", "--json", "-s", stack],
                ["pulumi", "stack", "output", "--json", "-s", stack],
            ]
        a, b = paired(
            sequence([[*driver, "promote", "--yes"]], repo, env),
            sequence(bare, repo, env),
            args.runs,
        )
        report("no-op promote over three unchanged stacks", a, b, "≤ 1.3x", lambda r: r <= 1.3)
    stop_health()
    moto.stop()
    build_times(args.cold_build)
    return 0


if __name__ == "__main__":
    shutil.which("git") or sys.exit("error: git is needed")
    sys.exit(main())
