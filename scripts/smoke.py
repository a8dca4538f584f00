"""Smoke checks for promotion steps: `python scripts/smoke.py [--frontend] [--config-only] [--attempts N]`.

The promotion driver runs this with the stack's outputs in the environment (STAGELINE_API_URL,
STAGELINE_HEALTH_PATHS, STAGELINE_TEST_DOMAIN, STAGELINE_STACK …):

- default: GET every service's health path through the API URL; each must answer 2xx;
- `--frontend`: also GET the frontend through the TEST distribution (the stack's
  promotion.verify.frontendPath, "/" by default);
- `--config-only`: only validate the stack's config file (Pulumi.<STAGELINE_STACK>.yaml), no HTTP.

Exit 0 when everything passes; otherwise one line on stderr and exit 1 (a failed check or an
invalid config) or 2 (the environment lacks a variable this script needs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.config import StackConfig

REPO = Path(__file__).resolve().parent.parent
ATTEMPTS = 3
TIMEOUT_SECONDS = 10.0


class Usage(Exception):
    """The environment does not say what to check (exit 2)."""


class Failed(Exception):
    """A check failed (exit 1)."""


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise Usage(f"{name} is not set (run this as a promotion step, which sets the stack's outputs)")
    return value


def _project_dir() -> Path:
    """The project whose stack files to read: the working directory when it is one (promotion runs
    steps from the project root), else the repository this script belongs to."""
    here = Path.cwd()
    return here if (here / "Pulumi.yaml").is_file() else REPO


def _stack_config(stack: str) -> StackConfig:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from infra.config import ConfigError, parse_stack_file, read_stack_file

    try:
        return parse_stack_file(read_stack_file(_project_dir(), stack))
    except ConfigError as exc:
        raise Failed(f"Pulumi.{stack}.yaml: {exc}") from None


def _get(url: str, attempts: int) -> None:
    import httpx

    problem = ""
    for attempt in range(attempts):
        try:
            response = httpx.get(url, timeout=TIMEOUT_SECONDS, follow_redirects=True)
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        else:
            if response.is_success:
                return
            problem = f"HTTP {response.status_code}"
        if attempt + 1 < attempts:
            time.sleep(1.0)
    raise Failed(f"{url}: {problem} after {attempts} attempt(s)")


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/smoke.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--frontend", action="store_true", help="also check the frontend through the TEST domain"
    )
    parser.add_argument("--config-only", action="store_true", help="only validate the stack's config file")
    parser.add_argument(
        "--attempts",
        type=int,
        default=ATTEMPTS,
        choices=range(1, 11),
        metavar="N",
        help=f"tries per endpoint, 1 s apart (default {ATTEMPTS})",
    )
    args = parser.parse_args(argv)
    try:
        stack = _env("STAGELINE_STACK")
        if args.config_only:
            _stack_config(stack)
            print(f"ok: Pulumi.{stack}.yaml is valid")
            return 0
        api_url = _env("STAGELINE_API_URL")
        try:
            paths = json.loads(_env("STAGELINE_HEALTH_PATHS"))
        except json.JSONDecodeError:
            raise Usage("STAGELINE_HEALTH_PATHS must be a JSON object {service: path}") from None
        if not isinstance(paths, dict) or not paths:
            raise Usage("STAGELINE_HEALTH_PATHS must be a JSON object {service: path}")
        urls = [_join(api_url, str(path)) for _, path in sorted(paths.items())]
        if args.frontend:
            domain = _env("STAGELINE_TEST_DOMAIN")
            origin = domain if "://" in domain else f"https://{domain}"
            urls.append(_join(origin, _stack_config(stack).promotion.verify.frontend_path))
        for url in urls:
            _get(url, args.attempts)
        print(f"ok: {stack}: {len(urls)} endpoint(s) healthy")
        return 0
    except Usage as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
