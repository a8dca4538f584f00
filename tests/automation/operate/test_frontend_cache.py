"""A frontend switch invalidates both distributions, against moto's CloudFront on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from promote_testkit import boto, moto_server, use_aws

from automation.operate.frontend_cache import invalidate_frontend


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def _distribution(cf: Any, name: str) -> str:
    config = {
        "CallerReference": name,
        "Comment": name,
        "Enabled": True,
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": "frontend",
                    "DomainName": "bucket.s3.eu-west-1.amazonaws.com",
                    "OriginPath": "/releases/v1",
                    "S3OriginConfig": {"OriginAccessIdentity": ""},
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": "frontend",
            "ViewerProtocolPolicy": "redirect-to-https",
            "MinTTL": 0,
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
        },
    }
    return cf.create_distribution(DistributionConfig=config)["Distribution"]["Id"]


def test_both_distributions_are_invalidated(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_aws(monkeypatch, endpoint)
    cf = boto("cloudfront", endpoint, region="us-east-1")
    app, test = _distribution(cf, "app"), _distribution(cf, "test")

    ids = invalidate_frontend({"appDistributionId": app, "testDistributionId": test})

    assert len(ids) == 2
    for distribution in (app, test):
        items = cf.list_invalidations(DistributionId=distribution)["InvalidationList"].get("Items", [])
        assert len(items) == 1
        batch = cf.get_invalidation(DistributionId=distribution, Id=items[0]["Id"])["Invalidation"]
        assert batch["InvalidationBatch"]["Paths"]["Items"] == ["/*"]


def test_a_failed_invalidation_warns_and_never_raises(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_aws(monkeypatch, endpoint)
    warnings: list[str] = []

    ids = invalidate_frontend({"appDistributionId": "ENOSUCHDIST"}, warn=warnings.append)

    assert ids == []
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: cannot invalidate the cache of distribution ENOSUCHDIST: ")


def test_a_stack_without_distributions_invalidates_nothing() -> None:
    assert invalidate_frontend({"apiUrl": "https://x"}) == []
