"""Make a frontend switch visible at once: invalidate both distributions' edge caches.

Promotion and rollback change a distribution's origin path (`releases/<version>`); CloudFront's
cache key does not include the origin path, so without an invalidation an edge keeps serving
objects it cached from the previous release until they expire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from infra import outputs as out

if TYPE_CHECKING:
    from automation.engine.protocol import Engine

DISTRIBUTION_OUTPUTS = (out.APP_DISTRIBUTION_ID, out.TEST_DISTRIBUTION_ID)


def invalidate_frontend(
    outputs: Mapping[str, Any],
    *,
    paths: tuple[str, ...] = ("/*",),
    warn: Callable[[str], None] | None = None,
) -> list[str]:
    """Create one invalidation per distribution the stack exports; return the invalidation IDs.

    A failure is reported through `warn` and never raised: the release itself is already live,
    and an invalidation that fails only delays what visitors see until the cache expires.
    `/*` counts as a single path for CloudFront's pricing.
    """
    from automation.aws import aws_client, aws_error

    ids: list[str] = []
    client = None
    for name in DISTRIBUTION_OUTPUTS:
        distribution = outputs.get(name)
        if not isinstance(distribution, str) or not distribution:
            continue
        try:
            client = client or aws_client("cloudfront", "us-east-1")  # CloudFront's API is global
            answer = client.create_invalidation(
                DistributionId=distribution,
                InvalidationBatch={
                    "Paths": {"Quantity": len(paths), "Items": list(paths)},
                    "CallerReference": f"stageline-{distribution}-{time.time_ns()}",
                },
            )
            ids.append(answer["Invalidation"]["Id"])
        except Exception as exc:
            if warn is not None:
                warn(f"warning: cannot invalidate the cache of distribution {distribution}: {aws_error(exc)}")
    return ids


def invalidate_after_rollback(engine: Engine, stack: str, progress: Callable[[str], None]) -> list[str]:
    """Invalidate a rolled-back stack's CloudFront caches, so the restored frontend shows at once.

    Never fails the rollback (it is done): a problem is a warning through `progress`.
    """
    from automation.errors import StagelineError

    try:
        outputs = engine.outputs(stack)
    except StagelineError as exc:
        progress(
            f"warning: cannot read the outputs of {stack} to invalidate the frontend cache: {exc.message}"
        )
        return []
    return invalidate_stack(stack, outputs.values, progress)


def invalidate_stack(stack: str, outputs: Mapping[str, Any], progress: Callable[[str], None]) -> list[str]:
    """Invalidate the stack's distributions after its frontend switched, saying so on one line.

    What promotion (after the release switch) and rollback (after the restore) both do.
    """
    ids = invalidate_frontend(outputs, warn=progress)
    if ids:
        progress(f"{stack}: invalidated the frontend cache ({', '.join(ids)})")
    return ids
