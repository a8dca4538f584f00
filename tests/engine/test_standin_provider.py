"""The stand-in provider plugins under the real Pulumi CLI: up, drift, replace, publish, faults, destroy.

Each test makes a throwaway project in tmp_path with a file:// backend, an isolated PULUMI_HOME and
its own stand-in cloud, and runs an inline program through the Automation API (inline programs need
no language host). The engine finds `pulumi-resource-aws` and `pulumi-resource-github` on PATH
(tests/standin/bin) as ambient plugins. The last test deploys the real program (`infra.program`).

Skipped when `pulumi` is not on PATH.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra import simulate
from tests.standin.cloud import Cloud, CloudError, is_secret

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(shutil.which("pulumi") is None, reason="needs the Pulumi CLI on PATH"),
]

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "tests" / "standin" / "bin"
REGION = "eu-west-1"
FUNCTION = "aws:lambda/function:Function"
ALIAS = "aws:lambda/alias:Alias"
BUCKET = "aws:s3/bucketV2:BucketV2"


@dataclass
class Rig:
    """One throwaway project: work dir, backend, Pulumi home and stand-in cloud, all in tmp_path."""

    root: Path
    env: dict[str, str]
    cloud: Cloud

    def stack(self, program: Callable[[], None], *, project: str = "tiny", name: str = "dev") -> Any:
        from pulumi import automation as auto

        return auto.create_or_select_stack(
            stack_name=name,
            project_name=project,
            program=program,
            opts=auto.LocalWorkspaceOptions(
                work_dir=str(self.root / "work"), pulumi_home=self.env["PULUMI_HOME"], env_vars=self.env
            ),
        )


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    # The SDK's inline language server runs each program in an event loop it never closes; the
    # collector would report it (and its self-pipe sockets) in whichever test runs next. Kept here
    # and closed when the test ends.
    loops: list[asyncio.AbstractEventLoop] = []
    new_event_loop = asyncio.new_event_loop

    def tracked() -> asyncio.AbstractEventLoop:
        loop = new_event_loop()
        loops.append(loop)
        return loop

    monkeypatch.setattr(asyncio, "new_event_loop", tracked)
    yield _rig(tmp_path)
    for loop in loops:
        if not loop.is_running() and not loop.is_closed():
            loop.close()


def _rig(tmp_path: Path) -> Rig:
    cli = shutil.which("pulumi")
    assert cli is not None
    for sub in ("work", "backend", "home", "cloud"):
        (tmp_path / sub).mkdir()
    (tmp_path / "work" / "Pulumi.yaml").write_text("name: tiny\nruntime: python\n")
    env = {
        "PATH": os.pathsep.join([str(BIN), str(Path(cli).parent), "/usr/bin", "/bin"]),
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}",
        "PULUMI_CONFIG_PASSPHRASE": "",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "STAGELINE_STANDIN_CLOUD": str(tmp_path / "cloud"),
        "STAGELINE_STANDIN_PYTHON": sys.executable,
    }
    return Rig(root=tmp_path, env=env, cloud=Cloud(tmp_path / "cloud"))


POLICY_STATEMENTS = [
    {
        "sid": "ReadReleases",
        "actions": ["s3:GetObject"],
        "resources": ["arn:aws:s3:::stageline-dev-artifacts-*/releases/*"],
        "principals": [{"type": "Service", "identifiers": ["cloudfront.amazonaws.com"]}],
        "conditions": [{"test": "Bool", "variable": "aws:SecureTransport", "values": ["true"]}],
    },
    {"effect": "Deny", "actions": ["s3:DeleteObject", "s3:PutObject"], "resources": ["*"]},
]


def handler(code: str) -> str:
    return f"def handler(event, context):\n    return {code!r}\n"


@dataclass
class Tiny:
    """A bucket, a role, a published function and its `live` alias; edit the fields between runs."""

    bucket: str | None = None
    code: str = "v1"
    extra_log_group: bool = False
    exports: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> None:
        import pulumi
        import pulumi_aws as aws

        provider = aws.Provider("aws", region=REGION)
        opts = pulumi.ResourceOptions(provider=provider)
        bucket = aws.s3.BucketV2("artifacts", bucket=self.bucket, opts=opts)
        role = aws.iam.Role(
            "exec",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            opts=opts,
        )
        function = aws.lambda_.Function(
            "fn",
            role=role.arn,
            runtime="python3.12",
            handler="index.handler",
            publish=True,
            memory_size=128,
            environment={"variables": {"LOG_LEVEL": "info"}},
            code=pulumi.AssetArchive({"index.py": pulumi.StringAsset(handler(self.code))}),
            opts=opts,
        )
        alias = aws.lambda_.Alias(
            "live", name="live", function_name=function.name, function_version=function.version, opts=opts
        )
        if self.extra_log_group:
            aws.cloudwatch.LogGroup("extra", retention_in_days=7, opts=opts)
        invoke = pulumi.InvokeOutputOptions(provider=provider)
        identity = aws.get_caller_identity_output(opts=invoke)
        pulumi.export("bucket", bucket.bucket)
        pulumi.export("bucketArn", bucket.arn)
        pulumi.export("functionName", function.name)
        pulumi.export("version", function.version)
        pulumi.export("aliasVersion", alias.function_version)
        pulumi.export("aliasArn", alias.arn)
        pulumi.export(
            "identity", {"accountId": identity.account_id, "arn": identity.arn, "userId": identity.user_id}
        )
        pulumi.export("partition", aws.get_partition_output(opts=invoke).partition)
        document = aws.iam.get_policy_document_output(statements=POLICY_STATEMENTS, opts=invoke)
        pulumi.export("policyJson", document.json)
        pulumi.export("region", aws.get_region_output(opts=invoke).region)


def values(result: Any) -> dict[str, Any]:
    return {k: v.value for k, v in result.outputs.items()}


def changes(summary: Any) -> dict[str, int]:
    return {k: v for k, v in (summary or {}).items() if v}


# --- the tiny program ----------------------------------------------------------------------------


def test_up_creates_in_the_cloud_and_a_second_up_changes_nothing(rig: Rig) -> None:
    program = Tiny()
    stack = rig.stack(program)

    preview = stack.preview()
    assert changes(preview.change_summary) == {"create": 6}  # stack, provider, bucket, role, function, alias
    assert rig.cloud.resources() == []

    up = stack.up()
    assert changes(up.summary.resource_changes) == {"create": 6}
    out = values(up)
    bucket = rig.cloud.find(BUCKET, "artifacts")
    assert bucket is not None and bucket.id == out["bucket"] == bucket.physical
    assert bucket.output("arn") == out["bucketArn"] == f"arn:aws:s3:::{out['bucket']}"
    # Autonamed as the real provider names: "<logical>-<7 hex>".
    assert out["bucket"].startswith("artifacts-") and len(out["bucket"]) == len("artifacts-") + 7
    function = rig.cloud.find(FUNCTION, "fn")
    assert function is not None and function.output("version") == out["version"] == "1"
    assert out["aliasVersion"] == "1"
    assert (
        out["aliasArn"]
        == f"arn:aws:lambda:{REGION}:{simulate.ACCOUNT_ID}:function:{out['functionName']}:live"
    )
    assert sorted((op, t) for op, t, _ in rig.cloud.operations()) == sorted(
        ("create", t) for t in (BUCKET, "aws:iam/role:Role", FUNCTION, ALIAS)
    )

    again = stack.up()
    assert changes(again.summary.resource_changes) == {"same": 6}
    assert values(again) == out
    assert [op for op, _, _ in rig.cloud.operations()].count("update") == 0


def test_invoke_results_are_infra_simulates(rig: Rig) -> None:
    out = values(rig.stack(Tiny()).up())
    identity = simulate.invoke_result("aws:index/getCallerIdentity:getCallerIdentity", {}, REGION)
    assert out["identity"] == {k: identity[k] for k in ("accountId", "arn", "userId")}
    assert (
        out["partition"]
        == simulate.invoke_result("aws:index/getPartition:getPartition", {}, REGION)["partition"]
    )
    assert out["region"] == REGION
    # These arguments' names are the same in the SDK's spelling and on the wire.
    document = simulate.invoke_result(
        "aws:iam/getPolicyDocument:getPolicyDocument", {"statements": POLICY_STATEMENTS}, REGION
    )
    assert out["policyJson"] == document["json"]
    assert json.loads(out["policyJson"])["Statement"][1] == {
        "Effect": "Deny",
        "Action": ["s3:DeleteObject", "s3:PutObject"],
        "Resource": "*",
    }


def test_drift_in_the_cloud_shows_in_preview_refresh_and_refresh_reads_it_back(rig: Rig) -> None:
    stack = rig.stack(Tiny())
    stack.up()
    rig.cloud.set_property("fn", "memorySize", 512)
    rig.cloud.set_property("fn", "environment.variables.LOG_LEVEL", "debug")

    preview = stack.preview_refresh()
    assert changes(preview.change_summary) == {"update": 1, "same": 5}
    state = stack.export_stack().deployment["resources"]
    (function,) = [r for r in state if r["type"] == FUNCTION]
    assert function["outputs"]["memorySize"] == 128  # a preview changes nothing

    refresh = stack.refresh()
    assert changes(refresh.summary.resource_changes) == {"update": 1, "same": 5}
    (function,) = [r for r in stack.export_stack().deployment["resources"] if r["type"] == FUNCTION]
    assert function["outputs"]["memorySize"] == 512
    assert function["outputs"]["environment"]["variables"]["LOG_LEVEL"] == "debug"

    # The program still says 128: the next up puts it back, and Lambda publishes a new version.
    up = stack.up()
    assert changes(up.summary.resource_changes) == {"update": 2, "same": 4}  # the function and its alias
    record = rig.cloud.find(FUNCTION, "fn")
    assert record is not None and record.output("memorySize") == 128 and record.output("version") == "2"


def test_a_resource_deleted_behind_the_engines_back_is_dropped_by_refresh_and_made_again_by_up(
    rig: Rig,
) -> None:
    stack = rig.stack(Tiny())
    first = values(stack.up())
    gone = rig.cloud.delete("artifacts")
    assert gone.physical == first["bucket"] and rig.cloud.find(BUCKET, "artifacts") is None

    refresh = stack.refresh()
    assert changes(refresh.summary.resource_changes) == {"delete": 1, "same": 5}
    up = stack.up()
    assert changes(up.summary.resource_changes) == {"create": 1, "same": 5}
    assert rig.cloud.find(BUCKET, "artifacts") is not None


def test_changing_the_bucket_name_replaces_the_bucket(rig: Rig) -> None:
    program = Tiny(bucket="stageline-first")
    stack = rig.stack(program)
    stack.up()
    program.bucket = "stageline-second"

    preview = stack.preview()
    assert changes(preview.change_summary) == {"replace": 1, "same": 5}
    up = stack.up()
    assert changes(up.summary.resource_changes) == {"replace": 1, "same": 5}
    assert [r.id for r in rig.cloud.resources(BUCKET)] == ["stageline-second"]
    ops = [(op, name) for op, t, name in rig.cloud.operations() if t == BUCKET]
    assert ops == [
        ("create", "artifacts"),
        ("create", "artifacts"),
        ("delete", "artifacts"),
    ]  # create before delete


def test_a_code_change_publishes_version_2_and_the_alias_follows(rig: Rig) -> None:
    program = Tiny()
    stack = rig.stack(program)
    assert values(stack.up())["version"] == "1"
    program.code = "v2"

    # In a preview the new version is not known yet: the alias shows an update to it.
    preview = stack.preview()
    assert changes(preview.change_summary) == {"update": 2, "same": 4}
    up = stack.up()
    out = values(up)
    assert out["version"] == out["aliasVersion"] == "2"
    function, alias = rig.cloud.find(FUNCTION, "fn"), rig.cloud.find(ALIAS, "live")
    assert function is not None and alias is not None
    assert function.output("version") == "2" and function.output("qualifiedArn").endswith(":2")
    assert alias.output("functionVersion") == "2"

    assert values(stack.up())["version"] == "2"  # nothing changed: nothing published


def test_fail_next_fails_the_next_create_with_its_message(rig: Rig) -> None:
    from pulumi.automation import CommandError

    program = Tiny()
    stack = rig.stack(program)
    stack.up()
    rig.cloud.fail_next("extra", "create", "LimitExceededException: simulated by the test")
    program.extra_log_group = True

    with pytest.raises(CommandError, match="LimitExceededException: simulated by the test"):
        stack.up()
    assert rig.cloud.find("aws:cloudwatch/logGroup:LogGroup", "extra") is None
    assert rig.cloud.faults() == []  # used up

    up = stack.up()
    assert changes(up.summary.resource_changes) == {"create": 1, "same": 6}
    assert rig.cloud.find("aws:cloudwatch/logGroup:LogGroup", "extra") is not None


def test_slow_delays_the_matching_operation(rig: Rig) -> None:
    rig.cloud.slow("artifacts", "create", 3)
    stack = rig.stack(Tiny())
    start = time.monotonic()
    stack.up()
    assert time.monotonic() - start >= 3
    created = [name for op, _, name in rig.cloud.operations() if op == "create"]
    # The role, which depends on nothing either, did not wait for it (its function and alias may,
    # on a loaded machine, still be on their way when the bucket's three seconds are up).
    assert created.index("exec") < created.index("artifacts")


def test_destroy_empties_the_cloud(rig: Rig) -> None:
    stack = rig.stack(Tiny())
    stack.up()
    assert len(rig.cloud.resources()) == 4
    destroy = stack.destroy()
    assert changes(destroy.summary.resource_changes) == {"delete": 6}
    assert rig.cloud.resources() == []
    assert [op for op, _, _ in rig.cloud.operations()].count("delete") == 4


# --- GitHub and secrets --------------------------------------------------------------------------


@dataclass
class GitHubProgram:
    token: str | None = "ghp_standin_token"

    def __call__(self) -> None:
        import pulumi
        import pulumi_github as github

        token = pulumi.Output.secret(self.token) if self.token else None
        provider = github.Provider("github", owner="acme-shop", token=token)
        opts = pulumi.ResourceOptions(provider=provider)
        env = github.RepositoryEnvironment("env", repository="storefront", environment="dev", opts=opts)
        github.ActionsEnvironmentVariable(
            "var", repository="storefront", environment=env.environment, variable_name="AWS_REGION",
            value=REGION, opts=opts,
        )  # fmt: skip
        secret = github.ActionsEnvironmentSecret(
            "secret", repository="storefront", environment=env.environment, secret_name="SLACK_WEBHOOK_URL",
            value=pulumi.Output.secret("https://hooks.example/T0/B0"), opts=opts,
        )  # fmt: skip
        user = github.get_user_output(
            username="maria-ops", opts=pulumi.InvokeOutputOptions(provider=provider)
        )
        pulumi.export("environment", env.environment)
        pulumi.export("secretValue", secret.value)
        pulumi.export("userId", user.id)


def test_github_resources_keep_secrets_secret_and_need_a_token(rig: Rig) -> None:
    stack = rig.stack(GitHubProgram())
    up = stack.up()
    assert up.outputs["secretValue"].secret and not up.outputs["environment"].secret
    assert (
        up.outputs["userId"].value
        == simulate.invoke_result("github:index/getUser:getUser", {"username": "maria-ops"}, REGION)["id"]
    )
    record = rig.cloud.find("github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret", "secret")
    assert record is not None and record.id == "storefront:dev:SLACK_WEBHOOK_URL"
    assert is_secret(record.inputs["value"]) and is_secret(record.outputs["value"])
    assert record.output("value") == "https://hooks.example/T0/B0"
    # The state holds it and the provider's token encrypted, never in plain text.
    checkpoint = (rig.root / "backend" / ".pulumi" / "stacks" / "tiny" / "dev.json").read_text()
    assert "ciphertext" in checkpoint
    assert "hooks.example" not in checkpoint and "ghp_standin_token" not in checkpoint
    assert changes(stack.up().summary.resource_changes) == {"same": 5}

    from pulumi.automation import CommandError

    tokenless = rig.stack(GitHubProgram(token=None), name="other")
    with pytest.raises(CommandError, match="401 Requires authentication"):
        tokenless.up()


# --- the plugin process --------------------------------------------------------------------------


def test_the_plugin_refuses_to_start_without_a_cloud() -> None:
    env = {k: v for k, v in os.environ.items() if k != "STAGELINE_STANDIN_CLOUD"}
    env["STAGELINE_STANDIN_PYTHON"] = sys.executable
    done = subprocess.run(
        [str(BIN / "pulumi-resource-aws"), "127.0.0.1:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "STAGELINE_STANDIN_CLOUD is not set" in lines[0]

    # The engine starts plugins in the program's directory: a relative path would name another place.
    env["STAGELINE_STANDIN_CLOUD"] = "cloud"
    done = subprocess.run(
        [str(BIN / "pulumi-resource-github"), "127.0.0.1:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "must be an absolute path" in done.stderr


def test_the_plugin_prints_its_port_and_stops_when_the_engine_is_gone(tmp_path: Path) -> None:
    env = {**os.environ, "STAGELINE_STANDIN_CLOUD": str(tmp_path), "STAGELINE_STANDIN_PYTHON": sys.executable}
    # Nothing listens on the engine address: the first health check fails and the plugin stops.
    with subprocess.Popen(
        [str(BIN / "pulumi-resource-github"), "--logtostderr", "-v=9", "127.0.0.1:9"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    ) as gone:
        assert gone.stdout is not None and gone.stdout.readline().strip().isdigit()
        assert gone.wait(timeout=60) == 0
    # Without an engine to watch it serves until it is told to stop (SIGINT, as the engine does).
    with subprocess.Popen(
        [str(BIN / "pulumi-resource-aws")], env=env, stdout=subprocess.PIPE, text=True
    ) as attached:
        assert attached.stdout is not None and attached.stdout.readline().strip().isdigit()
        time.sleep(0.5)
        assert attached.poll() is None
        attached.send_signal(signal.SIGINT)
        assert attached.wait(timeout=30) == 0


def test_the_cloud_edits_paths_keeps_secrets_and_counts_faults(tmp_path: Path) -> None:
    from tests.standin.cloud import Record

    cloud = Cloud(tmp_path)
    wrapped = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "s3cr3t"}
    record = Record(
        id="fn-1",
        urn="urn:pulumi:dev::tiny::aws:lambda/function:Function::fn",
        type=FUNCTION,
        name="fn",
        physical="fn-1",
        inputs={"memorySize": 128, "environment": {"variables": {"TOKEN": wrapped}}},
        outputs={"memorySize": 128, "environment": {"variables": {"TOKEN": wrapped}}, "version": "1"},
    )
    cloud.put(record, "create")
    cloud.set_property("fn", "environment.variables.TOKEN", "changed")
    cloud.set_property("fn-1", "version", "7")
    got = cloud.get("fn-1")
    assert got is not None and got.output("environment.variables.TOKEN") == "changed"
    assert is_secret(got.inputs["environment"]["variables"]["TOKEN"])
    assert got.output("version") == "7" and "version" not in got.inputs
    with pytest.raises(CloudError):
        cloud.set_property("nothing-by-that-name", "x", 1)

    cloud.fail_next(FUNCTION, "update", "boom", times=2)
    cloud.slow("fn", "update", 0.25)
    assert cloud.take_faults("update", ["fn", FUNCTION]) == (0.25, "boom")
    assert cloud.take_faults("update", ["fn", FUNCTION]) == (0.25, "boom")
    assert cloud.take_faults("update", ["fn", FUNCTION]) == (0.25, None)
    assert cloud.take_faults("delete", ["fn", FUNCTION]) == (0.0, None)
    assert cloud.operations() == [("create", FUNCTION, "fn")]


def test_a_reader_sees_every_write_of_another_process_and_never_shares_what_it_returns(
    tmp_path: Path,
) -> None:
    from tests.standin.cloud import Record

    writer, reader = Cloud(tmp_path), Cloud(tmp_path)  # two plugin processes over one directory
    urn = "urn:pulumi:dev::tiny::aws:lambda/function:Function::fn"
    record = Record(
        id="fn-1", urn=urn, type=FUNCTION, name="fn", physical="fn-1", outputs={"memorySize": 128}
    )
    writer.put(record, "create")
    first = reader.lookup(urn, FUNCTION, "fn-1")
    assert first is not None and first.outputs == {"memorySize": 128}
    first.outputs["memorySize"] = 1  # what a caller does with its record stays its own
    again = reader.lookup(urn, FUNCTION, "fn-1")
    assert again is not None and again.outputs == {"memorySize": 128}

    writer.set_property("fn", "memorySize", 512)  # drift made behind the reader's back
    changed = reader.lookup(urn, FUNCTION, "fn-1")
    assert changed is not None and changed.outputs == {"memorySize": 512}
    writer.delete("fn-1")
    assert reader.lookup(urn, FUNCTION, "fn-1") is None


@pytest.mark.parametrize(("raw", "seconds"), [("", 0.0), ("0.1", 0.1), ("2", 2.0), ("-1", 0.0)])
def test_the_round_trip_latency_comes_from_the_environment(
    raw: str, seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.standin.provider import LATENCY_ENV, round_trip_seconds

    monkeypatch.setenv(LATENCY_ENV, raw)
    assert round_trip_seconds() == seconds
    monkeypatch.setenv(LATENCY_ENV, "fast")
    with pytest.raises(SystemExit, match="STAGELINE_STANDIN_LATENCY must be a number of seconds"):
        round_trip_seconds()


# --- the real program ----------------------------------------------------------------------------


def test_the_real_program_deploys_dev_then_changes_nothing_previews_prod_and_destroys_dev(rig: Rig) -> None:
    from infra.program import deploy

    work = rig.root / "work"
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml"):
        shutil.copy(REPO / name, work / name)
    (work / "infra").symlink_to(REPO / "infra")  # Pulumi.yaml's `main`: the CLI checks that it exists
    # The GitHub provider plugin reads its token from its environment (github:token is refused).
    rig.env["GITHUB_TOKEN"] = "ghp_standin_token"

    dev = rig.stack(deploy, project="stageline", name="dev")
    start = time.monotonic()
    up = dev.up()
    took = time.monotonic() - start
    state = dev.export_stack().deployment["resources"]
    custom = [r for r in state if r.get("custom") and not r["type"].startswith("pulumi:providers:")]
    print(
        f"\nreal program: {len(state)} resources in the stack ({len(custom)} in the cloud), "
        f"up took {took:.1f}s"
    )
    assert 60 <= len(custom) <= 100  # dev holds no GitHub resources (github.manage: false)
    assert len(rig.cloud.resources()) == len(custom)
    assert changes(up.summary.resource_changes) == {"create": len(state)}
    out = values(up)
    assert out["publishedVersions"] == {"api": "1", "worker": "1"} == out["liveVersions"]
    function = rig.cloud.find(FUNCTION, "service-api-function")
    assert function is not None and function.physical == "stageline-dev-api"
    # The provider's default tags reach every taggable resource, as `tagsAll`.
    assert {"environment": "dev", "managed-by": "pulumi"}.items() <= function.output("tagsAll").items()

    again = dev.up()
    assert changes(again.summary.resource_changes) == {"same": len(state)}
    refresh = dev.refresh()
    assert changes(refresh.summary.resource_changes) == {"same": len(state)}
    assert [op for op, _, _ in rig.cloud.operations()].count("read") == len(custom)

    prod = rig.stack(deploy, project="stageline", name="prod")
    preview = prod.preview()
    assert set(changes(preview.change_summary)) == {"create"}
    assert changes(preview.change_summary)["create"] > len(state) - 5

    destroy = dev.destroy()
    assert changes(destroy.summary.resource_changes) == {"delete": len(state)}
    assert rig.cloud.resources() == []
