"""The application platform: services, HTTP API, frontend, observability.

Built by `build_platform` from the stack config and the artifact store; returns what the
program exports and what the GitHub environment publishes as variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pulumi

if TYPE_CHECKING:
    from infra.artifacts import ArtifactStore
    from infra.config import StackConfig


@dataclass
class Platform:
    exports: dict[str, pulumi.Input[object]] = field(default_factory=dict)
    variables: dict[str, pulumi.Input[str]] = field(default_factory=dict)


def build_platform(cfg: StackConfig, aws_opts: pulumi.ResourceOptions, artifacts: ArtifactStore) -> Platform:
    # Filled in by the application-platform work (services, API, frontend, observability).
    return Platform()
