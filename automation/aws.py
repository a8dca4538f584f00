"""boto3 clients for the driver's own AWS calls (artifact copies, alarm reads, cache invalidations).

One session loads each service model once; clients retry in boto3's standard mode. They honour
`AWS_ENDPOINT_URL` (boto3 reads it natively), which is how the tests point them at moto's server.
Errors become one line through `aws_error`, never request details.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

_REGISTRY_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repository>[a-z0-9._/-]+)$"
)


@cache
def _session() -> Any:
    # One session: it loads each service model once (a fresh session per client costs ~0.25 s).
    import boto3

    return boto3.session.Session()


def aws_client(service: str, region: str | None) -> Any:
    """A boto3 client with standard retries; endpoint and credentials from boto3's usual chain."""
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60)
    return _session().client(service, region_name=region, config=config)


@dataclass(frozen=True)
class Registry:
    """An ECR repository, from a stack's `ecrRepositoryUrl` output."""

    account: str
    region: str
    repository: str

    @property
    def url(self) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{self.repository}"


def parse_registry(url: str, what: str = "ecrRepositoryUrl") -> Registry:
    from automation.errors import StagelineError

    m = _REGISTRY_RE.match(url.strip())
    if not m:
        raise StagelineError(f"output {what} is not an ECR repository URL: {url!r}")
    return Registry(account=m["account"], region=m["region"], repository=m["repository"])


def error_code(exc: BaseException) -> str:
    """The error code of a boto3 ClientError ("" for anything else)."""
    from botocore.exceptions import ClientError

    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


def aws_error(exc: BaseException) -> str:
    """One line for a boto3 failure: the error code and message, never request details."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, message = err.get("Code", "Error"), err.get("Message", "")
        return f"{code}: {message}" if message else str(code)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
