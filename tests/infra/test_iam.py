"""The one judgement of IAM breadth (`infra.iam`): by matching, so every spelling of a breadth is one."""

from __future__ import annotations

from typing import Any

import pytest
from foundation_testkit import ACCOUNT, Owner

from infra import iam

DEV = Owner("dev")


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


@pytest.mark.parametrize(
    ("action", "wholly"),
    [("*", "every service"), ("*:*", "every service"), ("s3:*", "s3"), ("s3:*?*", "s3"), ("iam:Put*", None)],
)
def test_an_action_pattern_is_judged_by_what_it_covers(action: str, wholly: str | None) -> None:
    assert iam.every_action_of(action) == wholly


@pytest.mark.parametrize(
    "resource",
    ["*", "arn:*", "arn:aws:*:*:*:*", "arn:aws:s3:::*", "arn:aws:s3:::*/*", "arn:aws:s3:::?*"],
)
def test_every_spelling_of_every_bucket_is_every_bucket(resource: str) -> None:
    assert iam.every_resource_of(resource, "s3")


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:s3:::stageline-dev-*",
        "arn:aws:s3:::stageline-dev-*/*",
        f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:stageline-dev-*",
        f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/*",
    ],
)
def test_a_pattern_under_a_name_or_a_resource_type_is_not_every_resource(resource: str) -> None:
    assert not iam.every_resource_of(resource, resource.split(":")[2])


def test_a_regional_wildcard_is_every_resource_of_that_region() -> None:
    assert iam.every_resource_of(f"arn:aws:logs:eu-west-1:{ACCOUNT}:*", "logs")


def test_every_resource_of_an_account_is_found_however_it_is_written() -> None:
    for resource in ("*", "arn:*", "arn:aws:*:*:*:*", ["arn:aws:*", "arn:aws:s3:::b"]):
        assert iam.every_resource(allow("s3:GetObject", resource)) is not None, resource
    assert iam.every_resource(allow("s3:GetObject", "arn:aws:s3:::*")) is None  # S3 only
    assert iam.every_resource({"Effect": "Allow", "Action": "*", "NotResource": "x"}) == "NotResource"


def test_passrole_is_judged_against_roles_outside_the_stack() -> None:
    own = allow("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/stageline-dev-*")
    assert iam.passrole_beyond(own, DEV) is None
    for resource in ("*", f"arn:aws:iam::{ACCOUNT}:role/*", "arn:aws:iam::*:role/stageline-*"):
        beyond = iam.passrole_beyond(allow("iam:Pass*", resource), DEV)
        assert beyond is not None and beyond[0] == resource, resource
    assert iam.passrole_beyond(allow("iam:PassRole", "*"), Owner("prod")) is not None


def test_escalation_is_judged_by_the_actions_covered_and_the_identities_reached() -> None:
    own = allow("iam:Put*", f"arn:aws:iam::{ACCOUNT}:role/stageline-dev-*")
    assert iam.escalations(own, DEV) == []
    reached = iam.escalations(allow("iam:Put*", f"arn:aws:iam::{ACCOUNT}:role/*"), DEV)
    assert ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/*") in reached
    assert iam.every_iam_action(allow("iam:*", f"arn:aws:iam::{ACCOUNT}:role/stageline-dev-*"), DEV)
    assert not iam.every_iam_action(allow("iam:Get*", "*"), DEV)
