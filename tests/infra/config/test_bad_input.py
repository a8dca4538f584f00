"""Bad input, one class at a time: every stack file a careless or hostile user could write gets one
line naming the file or key (exit 2 through the driver), and nothing AWS or Pulumi would refuse
mid-update is accepted up front (issue 11).

The property test in tests/automation/assure/test_bad_stack_files.py mutates the shipped files at
random; these are the plain examples, one per class.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from foundation_testkit import ROOT, run, stack_values

from infra.config import ConfigError, parse, parse_stack_file, read_stack_file
from infra.config.stack_file import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, parse_yaml

DEV = (ROOT / "Pulumi.dev.yaml").read_bytes()


def file_error(tmp_path: Path, data: bytes, stack: str = "dev") -> str:
    (tmp_path / f"Pulumi.{stack}.yaml").write_bytes(data)
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse_stack_file(read_stack_file(tmp_path, stack))
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "\n" not in message
    return message


def parse_error(values: dict[str, Any], **kwargs: Any) -> str:
    kwargs.setdefault("region", "eu-west-1")
    with pytest.raises(ConfigError) as caught:
        parse(values, stack="dev", **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- the reader: encodings, limits, YAML features ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"# caf\xe9\n" + DEV, "Pulumi.dev.yaml line 1 is not UTF-8 text (byte 0xe9); save it as UTF-8"),
        (b"\x00\x01\x02\xff" * 10, "Pulumi.dev.yaml line 1 is not UTF-8 text (byte 0xff); save it as UTF-8"),
        ("config: {}\n".encode("utf-16"), "Pulumi.dev.yaml is UTF-16 text; save it as UTF-8"),
        (
            b"config:\n  a: \x01\n",
            "Pulumi.dev.yaml line 2 holds the control character #x0001, which YAML does not allow",
        ),
    ],
)
def test_a_file_that_is_not_utf8_text_is_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    assert file_error(tmp_path, data) == message


def test_a_utf8_bom_is_allowed_as_pulumi_allows_it(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_bytes(b"\xef\xbb\xbf" + DEV)
    assert read_stack_file(tmp_path, "dev").values == read_stack_file(ROOT, "dev").values


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    data = DEV + b"#" * (8 * 1024 * 1024)  # 8 MB of comments
    assert file_error(tmp_path, data) == (
        f"Pulumi.dev.yaml is larger than {MAX_FILE_BYTES} bytes, the most a stack file may have"
    )


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 10_000])
def test_deep_nesting_is_refused_before_the_parser_recurses(tmp_path: Path, depth: int) -> None:
    data = b"config:\n  stageline:tags: " + b"[" * depth + b"]" * depth + b"\n"
    if len(data) > MAX_FILE_BYTES:
        data = b"config:\n  x:y: " + b"[" * (MAX_FILE_BYTES // 2 - 20)
    assert file_error(tmp_path, data) == f"Pulumi.dev.yaml line 2: nests deeper than {MAX_DEPTH} levels"


def test_an_alias_bomb_under_any_namespace_is_refused_in_milliseconds(tmp_path: Path) -> None:
    lines = [b"config:", b"  other:a: &a [x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefghij":
        previous = chr(ord(level) - 1)
        lines.append(
            f"  other:{level}: &{level} [".encode() + b", ".join([f"*{previous}".encode()] * 9) + b"]"
        )
    data = b"\n".join(lines) + b"\n" + DEV.split(b"config:\n", 1)[1]
    message = file_error(tmp_path, data)
    assert message.endswith(f"holds more than {MAX_NODES} values (aliases counted at every use)")
    assert message.startswith("Pulumi.dev.yaml line ")


def test_an_alias_to_its_own_anchor_is_refused(tmp_path: Path) -> None:
    assert file_error(tmp_path, b"config:\n  x:y: &a [*a]\n") == (
        "Pulumi.dev.yaml line 2: alias *a refers to its own anchor"
    )


def test_aliases_within_the_limits_read_as_pulumi_reads_them(tmp_path: Path) -> None:
    data = DEV.replace(
        b"  stageline:tags:\n    cost-center: storefront", b"  stageline:tags: &t\n    cost-center: x"
    )
    data += b"  other:copy: *t\n"
    (tmp_path / "Pulumi.dev.yaml").write_bytes(data)
    sf = read_stack_file(tmp_path, "dev")
    assert sf.other["other:copy"] == {"cost-center": "x"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"config:\n  stageline:a: 1\n  stageline:a: 2\n",
            'Pulumi.dev.yaml line 3: key "stageline:a" is set twice (first on line 2); '
            "Pulumi refuses duplicate keys",
        ),
        (
            b"config:\n  x:y:\n    memory: 256\n    memory: 512\n",
            'Pulumi.dev.yaml line 4: key "memory" is set twice (first on line 3); '
            "Pulumi refuses duplicate keys",
        ),
        (
            b"config:\n  x:y: {a: 1, a: 2}\n",
            'Pulumi.dev.yaml line 2: key "a" is set twice (first on line 2); Pulumi refuses duplicate keys',
        ),
        (
            b"config:\n  services: 1\n  stageline:services: 2\n",
            'Pulumi.dev.yaml: config key "stageline:services" is set twice (with and without its namespace)',
        ),
    ],
)
def test_duplicate_keys_are_refused_as_pulumi_refuses_them(tmp_path: Path, data: bytes, message: str) -> None:
    assert file_error(tmp_path, data) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"config:\n  5: x\n",
            "Pulumi.dev.yaml: config key 5 must be a string of the form namespace:key "
            "(Pulumi refuses any other)",
        ),
        (b"config:\n  ? [a]\n  : x\n", "Pulumi.dev.yaml line 2: a mapping key is a list or a mapping"),
        (
            b"config:\n  a: !!python/object:os.system x\n",
            "Pulumi.dev.yaml line 2 is not valid YAML: could not "
            "determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
        (
            b"config: {}\n---\nconfig: {}\n",
            "Pulumi.dev.yaml line 2 is not valid YAML: but found another document",
        ),
        (b"config: [1]\n", "Pulumi.dev.yaml: config must be a mapping of namespace:key to values"),
        (b"- 1\n", "Pulumi.dev.yaml must be a mapping with a config: key"),
    ],
)
def test_yaml_pulumi_would_not_take_as_config_is_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    assert file_error(tmp_path, data) == message


def test_a_key_without_namespace_is_the_projects_as_pulumi_reads_it(tmp_path: Path) -> None:
    data = DEV.replace(b"  stageline:logRetentionDays: 7", b"  logRetentionDays: 7")
    (tmp_path / "Pulumi.dev.yaml").write_bytes(data)
    assert read_stack_file(tmp_path, "dev").values["logRetentionDays"] == 7


def test_scalars_mean_what_they_mean_to_pulumi() -> None:
    assert parse_yaml(b"a: yes\nb: on\nc: 2024-01-01\nd: true\n", "f.yaml") == {
        "a": "yes",
        "b": "on",
        "c": "2024-01-01",
        "d": True,
    }


# --- values AWS or Pulumi would refuse --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"k": "v" * 257}, 'stageline:tags: tag "k" has a value of 257 characters; AWS allows 256'),
        (
            {"k" * 129: "v"},
            'stageline:tags: tag key "kkkkkkkkkkkkkkkkkkkk"… has 129 characters; AWS allows 128',
        ),
        (
            {"aws:owner": "me"},
            'stageline:tags: tag key "aws:owner" starts with aws:, which AWS reserves for its own tags',
        ),
        (
            {"AWS:owner": "me"},
            'stageline:tags: tag key "AWS:owner" starts with aws:, which AWS reserves for its own tags',
        ),
        (
            {"k": "a\u0007b"},
            'stageline:tags: tag value "k" holds "\\u0007"; AWS allows letters, digits, '
            "spaces and _ . : / = + - @",
        ),
        (
            {"k#": "v"},
            'stageline:tags: tag key "k#" holds "#"; AWS allows letters, digits, spaces and _ . : / = + - @',
        ),
        (
            {f"t{i}": "v" for i in range(41)},
            "stageline:tags sets 41 tags; at most 40 fit beside the "
            "program's own (AWS allows 50 on a resource)",
        ),
    ],
)
def test_tags_aws_would_refuse_are_refused_up_front(tags: dict[str, str], message: str) -> None:
    assert parse_error({**stack_values(), "tags": tags}) == message


@pytest.mark.parametrize("tag", ["project", "environment", "managed-by"])
def test_the_programs_own_tags_are_refused_rather_than_overridden(tag: str) -> None:
    assert parse_error({**stack_values(), "tags": {tag: "mine"}}) == (
        f"stageline:tags.{tag} is set by Stageline on every resource (project, environment, managed-by); "
        "remove it from the stack file"
    )


def test_tags_in_any_script_are_accepted() -> None:
    cfg = parse(
        {**stack_values(), "tags": {"équipe": "Zürich 東京 +1", "a/b": "x=y@z"}},
        stack="dev",
        region="eu-west-1",
    )
    assert cfg.tags == {"équipe": "Zürich 東京 +1", "a/b": "x=y@z"}


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("mars-north-1", 'aws:region "mars-north-1" is not an AWS region (did you mean "eu-north-1"?)'),
        ("eu-west-9", 'aws:region "eu-west-9" is not an AWS region (did you mean "eu-west-3"?)'),
        (5, 'aws:region must be a region name like "eu-west-1", got 5'),
        (["eu-west-1"], "aws:region must be a region name like \"eu-west-1\", got ['eu-west-1']"),
        (None, "aws:region is required (set it in Pulumi.dev.yaml)"),
    ],
)
def test_an_unknown_region_or_one_that_is_not_a_name_says_so(region: Any, message: str) -> None:
    assert parse_error(stack_values(), region=region) == message


def test_every_region_of_botocores_data_is_accepted() -> None:
    for region in ("eu-west-1", "us-east-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"):
        assert parse(stack_values(), stack="dev", region=region).region == region


def test_a_promotion_source_that_is_no_stack_is_refused(tmp_path: Path) -> None:
    data = (ROOT / "Pulumi.prod.yaml").read_bytes().replace(b"source: staging", b"source: stagging")
    (tmp_path / "Pulumi.staging.yaml").write_bytes((ROOT / "Pulumi.staging.yaml").read_bytes())
    assert file_error(tmp_path, data, "prod") == (
        'stageline:promotion.source names stack "stagging", which has no Pulumi.stagging.yaml '
        '(known stacks: prod, staging) (did you mean "staging"?)'
    )


def test_an_empty_route_list_is_refused_rather_than_becoming_the_default_routes() -> None:
    values = stack_values()
    values["services"][0]["routes"] = []
    assert parse_error(values) == (
        "stageline:services[0].routes is empty: list the service's routes, or leave the key out for the "
        'default ("ANY /api", "ANY /api/{proxy+}")'
    )


@pytest.mark.parametrize(
    ("key", "value", "word"),
    [
        ("gitlab:token", "glpat-0123456789abcdef", "token"),
        ("aws:secretKey", "wJalrXUtnFEMI/K7MDENG", "secret"),
        ("aws:accessKey", "AKIAIOSFODNN7EXAMPLE", "access key"),
        ("slack:webhookUrl", "https://hooks.slack.com/services/T/B/X", "webhook"),
        ("other:dbPassword", 1234, "password"),
    ],
)
def test_a_secret_in_plain_text_in_any_namespace_is_refused(key: str, value: Any, word: str) -> None:
    assert parse_error(stack_values(), other={key: value}) == (
        f"{key} is a secret ({word}) in plain text: anyone who can read the repository has it; "
        f"set it with `pulumi config set --secret {key} … -s dev`"
    )


def test_a_secret_in_any_namespace_is_read_as_such_from_the_file(tmp_path: Path) -> None:
    plain = DEV + b"  aws:secretKey: wJalrXUtnFEMI\n"
    assert file_error(tmp_path, plain).startswith("aws:secretKey is a secret (secret) in plain text")
    (tmp_path / "Pulumi.dev.yaml").write_bytes(DEV + b"  aws:secretKey:\n    secure: v1:abc\n")
    assert parse_stack_file(read_stack_file(tmp_path, "dev")).stack == "dev"


def test_a_plain_text_secret_is_refused_by_the_program_too() -> None:
    with pytest.raises(ConfigError, match=r"^aws:secretKey is a secret \(secret\) in plain text"):
        run(stack_values(), extra_config={"aws:secretKey": "wJalrXUtnFEMI"})


@pytest.mark.parametrize(
    ("name", "word"),
    [
        ("DB_PASSWORD", "password"),
        ("STRIPE_API_KEY", "api key"),
        ("GITHUB_TOKEN", "token"),
        ("clientSecret", "secret"),
        ("SLACK_WEBHOOK_URL", "webhook"),
        ("PRIVATE_KEY", "private key"),
    ],
)
def test_an_environment_value_named_like_a_secret_is_refused(name: str, word: str) -> None:
    values = stack_values()
    values["services"][0]["environment"] = {name: "hunter2"}
    assert parse_error(values) == (
        f"stageline:services[0].environment.{name} is named like a secret ({word}): Lambda shows environment "
        "values to anyone who may read the function's configuration; keep the value in Secrets Manager and "
        f"pass where it is (e.g. {name}_SECRET_ARN)"
    )


@pytest.mark.parametrize("name", ["DB_PASSWORD_SECRET_ARN", "TOKEN_TTL_SECONDS", "LOG_LEVEL", "API_KEY_NAME"])
def test_an_environment_value_naming_where_a_secret_is_is_accepted(name: str) -> None:
    values = stack_values()
    values["services"][0]["environment"] = {name: "x"}
    assert parse(values, stack="dev", region="eu-west-1").services[0].environment[name] == "x"


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:kms:*",
        "arn:aws:kms:eu-west-1:111111111111:key/*",
        "arn:aws:kms:*:111111111111:key/1234",
        "arn:aws:kms:eu-west-1:*:key/1234",
        "arn:aws:s3:::bucket",
    ],
)
def test_the_state_key_must_name_one_key(arn: str) -> None:
    assert parse_error({**stack_values(), "state": {"kmsKeyArn": arn}}) == (
        "stageline:state.kmsKeyArn must look like one KMS key's ARN, arn:aws:kms:REGION:ACCOUNT:key/ID "
        f'(or alias/NAME), no wildcard, got "{arn}"'
    )
