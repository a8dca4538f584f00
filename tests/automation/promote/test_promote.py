"""`promote`: a release moves dev → staging → prod through gates, verification and rollback.

The engine is the in-memory fake (its call log says what was deployed and what was not). Health
endpoints and the Slack webhook are a local HTTP server; alarms, registries and buckets live in
moto's server on 127.0.0.1. The pipeline is the repository's own stack files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from promote_testkit import (
    ACCOUNT,
    HEALTH,
    FakeClock,
    Stub,
    boto,
    closed_port_url,
    healthy_routes,
    http_stub,
    moto_alarm,
    moto_server,
    stage_outputs,
    use_aws,
)

import automation.promote.run
from automation.engine.fake import FakeEngine, make_release, step, urn
from automation.engine.model import PropertyDrift, ResourceDrift
from automation.gitinfo import head_commit
from automation.operate.updates import RetryPolicy, update_message
from automation.promote.notify import Notifier
from automation.promote.pipeline import Stage, resolve
from automation.promote.record import PromotionRecord
from automation.promote.run import PromoteOptions, Runtime, promote
from infra import outputs as out

ROOT = Path(__file__).resolve().parents[3]
PIPELINE = resolve(ROOT)  # the repository's own stack files
STAGES = ("dev", "staging", "prod")
HOOK = "/services/T0/B0/hook"
OLD = make_release("4f9c2d1", {"api": "sha256:" + "a" * 64, "worker": "sha256:" + "b" * 64})
NEW = make_release("5e6f7a8", {"api": "sha256:" + "c" * 64, "worker": "sha256:" + "d" * 64})
LAMBDA = "aws:lambda/function:Function"
# One registry and one bucket for all stages: nothing to copy between them.
SHARED = {
    out.ECR_REPOSITORY_URL: f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/stageline",
    out.FRONTEND_BUCKET: "stageline-frontend",
}


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def stub() -> Iterator[Stub]:
    with http_stub({HOOK: 200}) as server:
        yield server


@dataclass
class World:
    """The three stages as the fake engine sees them, plus the endpoints verification talks to."""

    fake: FakeEngine
    stub: Stub
    root: Path = ROOT
    clock: FakeClock = field(default_factory=FakeClock)
    on_up: list[Callable[[str, Mapping[str, Any]], None]] = field(default_factory=list)
    live: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 3))

    def run(
        self,
        stages: tuple[Stage, ...] | None = None,
        confirm: Callable[[str], bool] | None = None,
        **options: Any,
    ) -> PromotionRecord:
        chosen = stages if stages is not None else tuple(_stage(s) for s in PIPELINE.names)
        rt = Runtime(
            engine=self.fake,
            root=self.root,
            notifier=Notifier(self.stub.url + HOOK, warn=lambda _: None),
            progress=lambda _: None,
            confirm=confirm,
            clock=self.clock,
            retry=RetryPolicy(tries=2, base_delay=0),
            echo_steps=False,
            commit="f" * 40,
        )
        return promote(chosen, PIPELINE.names, PromoteOptions(**options), rt)

    def ups(self, stack: str) -> list[str]:
        return [c.args["message"] for c in self.fake.calls if c.op == "up" and c.stack == stack]

    def releases_written(self, stack: str) -> list[dict[str, Any]]:
        return [
            dict(c.args["release"]) for c in self.fake.calls if c.op == "set_release" and c.stack == stack
        ]

    def file_release(self, stack: str) -> Any:
        return self.fake.stack(stack).config["stageline:release"]

    def slack(self) -> list[str]:
        return [p["text"] for p in self.stub.posts(HOOK)]


def make_world(
    stub: Stub, outputs: Mapping[str, Mapping[str, Any]] | None = None, root: Path = ROOT
) -> World:
    """dev's stack file holds NEW; every stage still runs OLD; each stage's preview shows a lambda update."""
    fake = FakeEngine.from_repo(root)
    world = World(fake=fake, stub=stub, root=root)
    for stack in STAGES:
        stub.routes.update(healthy_routes(stack))
        values = dict(outputs[stack]) if outputs else stage_outputs(stack, stub.url) | SHARED
        values[out.LIVE_VERSIONS] = {"api": "3", "worker": "3"}
        fake.set_outputs(stack, values)
        fake.add_history(stack, release=OLD, message="promote 4f9c2d1")
        fake.set_preview(stack, [step(stack, "update", LAMBDA, f"{stack}-api", changed=["imageUri"])])
    fake.set_config("dev", "stageline:release", NEW)

    def after_up(stack: str, config: Mapping[str, Any]) -> dict[str, Any]:
        for hook in world.on_up:
            hook(stack, config["stageline:release"])
        world.live[stack] += 1
        return {out.LIVE_VERSIONS: {"api": str(world.live[stack]), "worker": str(world.live[stack])}}

    fake.on_up = after_up
    return world


@pytest.fixture
def world(stub: Stub) -> World:
    return make_world(stub)


PromoteCli = Callable[..., Result]


@pytest.fixture
def promote_cli(
    invoke: Callable[..., Result],
    cli_engine: Callable[[FakeEngine], FakeEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> PromoteCli:
    """`python -m automation promote ARGS` in-process against the world's fake engine and a fake clock."""

    def run(world: World, *args: str, input: str | None = None) -> Result:
        cli_engine(world.fake)
        monkeypatch.setattr(automation.promote.run, "clock_factory", lambda: world.clock)
        return invoke(["promote", *args], input=input)

    return run


def _is_old(release: Mapping[str, Any]) -> bool:
    """OLD deployed in full: what a rollback restores (a candidate phase keeps OLD's version too)."""
    return release["version"] == OLD["version"] and "candidate" not in release


def _stage(name: str, **changes: Any) -> Stage:
    """A stage as the stack files define it, without its pre/post steps unless given: the smoke
    script they name has its own tests, and the happy path runs it through the CLI."""
    return dataclasses.replace(PIPELINE.stage(name), **{"pre": (), "post": (), **changes})


# --- the happy path ---------------------------------------------------------------------------------


def _seed_artifacts(endpoint: str, uid: str) -> dict[str, dict[str, Any]]:
    """dev's registry holds NEW's images and its bucket the frontend files; staging's and prod's
    registries already hold the blobs (moto cannot serve GetDownloadUrlForLayer), not the images."""
    regions = {"dev": "eu-west-1", "staging": "us-east-1", "prod": "eu-central-1"}
    layer = b"layer" * 100
    config = json.dumps({"os": "linux"}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                }
            ],
        }
    )
    outputs = {}
    for stack, region in regions.items():
        ecr, s3 = boto("ecr", endpoint, region), boto("s3", endpoint, region)
        repository, bucket = f"stageline-{stack}-{uid}", f"front-{stack}-{uid}"
        ecr.create_repository(repositoryName=repository)
        for blob in (config, layer):
            upload = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
            ecr.upload_layer_part(
                repositoryName=repository,
                uploadId=upload,
                partFirstByte=0,
                partLastByte=len(blob) - 1,
                layerPartBlob=blob,
            )
            ecr.complete_layer_upload(
                repositoryName=repository,
                uploadId=upload,
                layerDigests=["sha256:" + hashlib.sha256(blob).hexdigest()],
            )
        kwargs = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        s3.create_bucket(Bucket=bucket, **kwargs)
        if stack == "dev":
            for service, digest in NEW["images"].items():
                ecr.put_image(
                    repositoryName=repository,
                    imageManifest=manifest.replace(
                        "}]}", f'}}], "annotations": {{"service": "{service}"}}}}'
                    ),
                    imageDigest=digest,
                    imageTag=f"{service}-build",
                )
            s3.put_object(Bucket=bucket, Key="releases/5e6f7a8/index.html", Body=b"<html>5e6f7a8</html>")
            s3.put_object(Bucket=bucket, Key="releases/4f9c2d1/index.html", Body=b"<html>old</html>")
        cw = boto("cloudwatch", endpoint, region)
        alarm = moto_alarm(cw, f"{stack}-errors-{uid}")
        outputs[stack] = {"region": region, "repository": repository, "bucket": bucket, "alarm": alarm}
    return outputs


def test_happy_path_moves_the_release_through_three_stages(
    stub: Stub,
    moto: str,
    promote_cli: PromoteCli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    use_aws(monkeypatch, moto)
    seeded = _seed_artifacts(moto, "happy")
    outputs = {
        s: stage_outputs(s, stub.url, region=v["region"], alarms=(v["alarm"],), frontend_bucket=v["bucket"])
        | {out.ECR_REPOSITORY_URL: f"{ACCOUNT}.dkr.ecr.{v['region']}.amazonaws.com/{v['repository']}"}
        for s, v in seeded.items()
    }
    world = make_world(stub, outputs)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", stub.url + HOOK)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    record_file = tmp_path / "promotion.json"

    result = promote_cli(world, "--yes", "--json", "--out", str(record_file))

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert json.loads(record_file.read_text()) == document
    assert (document["result"], document["exitCode"]) == ("succeeded", 0)
    assert [(s["stack"], s["result"]) for s in document["stages"]] == [
        ("dev", "deployed"),
        ("staging", "deployed"),
        ("prod", "deployed"),
    ]
    # every stage runs exactly the release dev verified, nothing rebuilt
    for stack in ("staging", "prod"):
        assert world.fake.stack(stack).history[-1].release == {"version": "5e6f7a8", "images": NEW["images"]}
    assert [len(world.ups(s)) for s in STAGES] == [2, 2, 3]  # TEST first (the candidate), then APP
    assert world.ups("staging") == [
        update_message("candidate 5e6f7a8 on TEST from dev", head_commit(ROOT), "ci-bot"),
        update_message("promote 5e6f7a8 from dev", head_commit(ROOT), "ci-bot"),
    ]
    # images arrived by digest in both later registries, the frontend files in both buckets
    for stack in ("staging", "prod"):
        ecr = boto("ecr", moto, seeded[stack]["region"])
        listed = ecr.list_images(repositoryName=seeded[stack]["repository"])["imageIds"]
        assert sorted(i["imageDigest"] for i in listed) == sorted(NEW["images"].values())
        body = (
            boto("s3", moto, seeded[stack]["region"])
            .get_object(Bucket=seeded[stack]["bucket"], Key="releases/5e6f7a8/index.html")["Body"]
            .read()
        )
        assert body == b"<html>5e6f7a8</html>"
    staging = document["stages"][1]
    assert [(i["service"], i["action"]) for i in staging["artifacts"]["images"]] == [
        ("api", "copied"),
        ("worker", "copied"),
    ]
    assert staging["artifacts"]["frontend"] == [
        {
            "sourceBucket": seeded["dev"]["bucket"],
            "targetBucket": seeded["staging"]["bucket"],
            "prefix": "releases/5e6f7a8/",
            "copied": 1,
            "present": 0,
        }
    ]
    # verified: health of every service and the frontend, bakes watching each stage's alarm
    assert [v["phase"] for v in staging["verification"]] == ["candidate", "release", "post"]
    # the candidate: the frontend through TEST, then the stage's post (E2E) steps, before APP moved
    candidate = staging["verification"][0]
    assert [c["name"] for c in candidate["health"]] == ["frontend"] and candidate["bake"] is None
    assert [s["command"] for s in candidate["steps"]] == ["python scripts/smoke.py --frontend"]
    assert [c["name"] for c in staging["verification"][1]["health"]] == ["api", "worker", "frontend"]
    assert staging["verification"][1]["bake"]["alarms"] == [seeded["staging"]["alarm"]]
    assert staging["verification"][1]["bake"]["plannedSeconds"] == 300
    assert [s["command"] for s in staging["steps"]] == ["python scripts/smoke.py --config-only"]
    assert [v["phase"] for v in document["stages"][2]["verification"]] == [
        "candidate",
        "canary",
        "full",
        "post",
    ]
    assert world.clock.slept == 300 + 900 + 900  # staging's bake, prod's canary bake and its full bake
    assert world.slack() == [
        ":rocket: Promoting release `5e6f7a8`: dev → staging → prod",
        ":white_check_mark: Release `5e6f7a8` promoted: dev deployed, staging deployed, prod deployed",
    ]
    assert document["notifications"] == {"sent": ["start", "success"], "failed": []}
    assert summary.read_text().startswith("## Promotion of release `5e6f7a8` succeeded\n")


def test_the_canary_goes_out_at_its_weight_over_the_live_versions_then_at_100(world: World) -> None:
    record = world.run(yes=True)
    assert record.exit_code == 0
    written = world.releases_written("prod")
    canary = {
        **make_release("5e6f7a8", NEW["images"]),
        "canary": {"weight": 0.1, "stableVersions": {"api": "3", "worker": "3"}},
    }
    # the gates' preview of the canary, TEST first (prod's live release with the candidate), the
    # canary, then 100 %
    assert written == [
        canary,
        {**OLD, "candidate": "5e6f7a8"},
        canary,
        make_release("5e6f7a8", NEW["images"]),
    ]
    assert world.ups("prod") == [
        "candidate 5e6f7a8 on TEST from staging @fffffff",
        "promote 5e6f7a8 from staging (canary 10%) @fffffff",
        "promote 5e6f7a8 from staging @fffffff",
    ]
    prod = record.stages[2]
    assert prod.canary_weight == 0.1
    assert [u.phase for u in prod.updates] == ["candidate", "canary", "full"]
    assert world.file_release("prod") == NEW
    # at 10 %, each service must answer 44 times in a row before the canary counts as healthy
    canary, full = prod.verifications[1:3]
    assert [(c.name, c.attempts, c.successes) for c in canary.health] == [
        ("api", 44, 44),
        ("worker", 44, 44),
        ("frontend", 1, 1),
    ]
    assert [c.attempts for c in full.health] == [1, 1, 1]


def test_without_live_versions_there_is_no_canary_and_the_record_says_why(world: World) -> None:
    world.fake.stack("prod").outputs.pop(out.LIVE_VERSIONS)
    record = world.run(yes=True)
    assert record.exit_code == 0
    full = make_release("5e6f7a8", NEW["images"])
    assert world.releases_written("prod") == [full, {**OLD, "candidate": "5e6f7a8"}, full]
    assert record.stages[2].canary_weight is None
    assert record.stages[2].notes[0] == (
        "no canary: prod exports no liveVersions yet (first deployment), so the release goes to 100 % at once"
    )


def test_running_the_same_promotion_again_changes_nothing(world: World) -> None:
    assert world.run(yes=True).exit_code == 0
    ups_before = len([c for c in world.fake.calls if c.op == "up"])
    writes_before = len([c for c in world.fake.calls if c.op == "set_release"])
    again = world.run(yes=True)
    assert (again.result, again.exit_code) == ("unchanged", 0)
    assert [s.result for s in again.stages] == ["unchanged", "unchanged", "unchanged"]
    assert len([c for c in world.fake.calls if c.op == "up"]) == ups_before
    assert len([c for c in world.fake.calls if c.op == "set_release"]) == writes_before
    # each unchanged stage is checked (health, alarms once), never baked
    assert [[(v.phase, v.ok) for v in s.verifications] for s in again.stages] == [[("check", True)]] * 3
    assert all(c.ok for s in again.stages for c in s.verifications[0].health)
    assert [s.verifications[0].bake.planned_seconds for s in again.stages if s.verifications[0].bake] == [
        0
    ] * 3
    assert world.slack()[-1] == (
        ":white_check_mark: Release `5e6f7a8` already everywhere, nothing changed: "
        "dev unchanged, staging unchanged, prod unchanged"
    )


def test_a_stale_stack_file_in_a_fresh_checkout_is_not_a_change(world: World) -> None:
    """In CI, staging's checkout holds the committed (old) release while staging already runs the new one."""
    world.run(yes=True)
    world.fake.set_config("staging", "stageline:release", OLD)
    again = world.run(stages=(_stage("staging"),))
    assert again.stages[0].result == "unchanged"
    assert world.file_release("staging") == make_release("5e6f7a8", NEW["images"])


# --- gates ------------------------------------------------------------------------------------------


def _drift(world: World) -> None:
    world.fake.set_drift(
        "staging",
        [
            ResourceDrift(
                urn="urn:pulumi:staging::stageline::aws:lambda/function:Function::staging-api",
                type=LAMBDA,
                name="staging-api",
                properties=(PropertyDrift("memorySize", "update", 512, 1024),),
            )
        ],
    )


def _pending(world: World) -> None:
    world.fake.add_pending("staging", LAMBDA, "staging-worker", "updating")


def _replace(world: World) -> None:
    world.fake.set_preview(
        "staging", [step("staging", "replace", "aws:s3/bucketV2:BucketV2", "frontend", changed=["bucket"])]
    )


def _iam(world: World) -> None:
    world.fake.set_preview(
        "staging",
        [
            step(
                "staging",
                "update",
                "aws:iam/role:Role",
                "staging-api-role",
                changed=["inlinePolicies[0].policy"],
            ),
            step("staging", "create", "aws:lambda/permission:Permission", "staging-api-invoke"),
            step("staging", "update", "aws:iam/role:Role", "staging-worker-role", changed=["tags"]),
        ],
    )


def _source_failed(world: World) -> None:
    world.fake.fail("dev", "up", "lambda update failed")


GATES = {
    "drift": (_drift, "1 resource(s) drifted from the recorded state"),
    "pending": (_pending, "1 pending operation(s) left by an interrupted update"),
    "replace": (_replace, "the preview would replace 1 protected or stateful resource(s)"),
    "iam": (_iam, "2 change(s) may widen IAM permissions or trust"),
}


@pytest.mark.parametrize("gate", sorted(GATES))
def test_a_refusing_gate_exits_3_and_deploys_nothing_past_it(world: World, gate: str) -> None:
    setup, detail = GATES[gate]
    setup(world)
    record = world.run(yes=True)
    assert (record.result, record.exit_code) == ("refused", 3)
    assert [s.result for s in record.stages] == ["deployed", "refused", "not run"]
    staging = record.stages[1]
    assert staging.gates[-1].name == gate and not staging.gates[-1].ok
    assert staging.gates[-1].detail.startswith(detail)
    assert (record.reason or "").startswith(f"staging: {gate} gate refused: {detail}")
    assert world.ups("staging") == [] and world.ups("prod") == []
    assert [c for c in world.fake.calls if c.stack == "prod"] == []
    assert world.file_release("staging") == OLD  # the release written for the preview was put back
    assert world.slack()[-1] == ":x: Promotion of `5e6f7a8` refused at staging"


def test_the_iam_gate_lists_only_changes_that_widen(world: World) -> None:
    _iam(world)
    record = world.run(yes=True)
    prefix = "urn:pulumi:staging::stageline::"
    assert record.stages[1].gates[-1].items == (
        f"update {prefix}aws:iam/role:Role::staging-api-role (inlinePolicies[0].policy)",
        f"create {prefix}aws:lambda/permission:Permission::staging-api-invoke",
    )


@pytest.mark.parametrize(
    ("gate", "override"),
    [
        ("drift", {"allow_drift": True}),
        (
            "replace",
            {
                "allow_replace": frozenset(
                    {"urn:pulumi:staging::stageline::aws:s3/bucketV2:BucketV2::frontend"}
                )
            },
        ),
        ("iam", {"approve_iam": True}),
    ],
)
def test_an_explicit_flag_lets_the_gate_pass_and_says_so(
    world: World, gate: str, override: dict[str, Any]
) -> None:
    GATES[gate][0](world)
    record = world.run(yes=True, **override)
    assert record.exit_code == 0
    passed = next(g for g in record.stages[1].gates if g.name == gate)
    assert passed.ok and passed.override == "--" + next(iter(override)).replace("_", "-")
    assert len(world.ups("staging")) == 2  # the candidate on TEST, then APP


def test_allowed_drift_is_put_back_by_an_up_that_refreshes_first(world: World) -> None:
    _drift(world)
    record = world.run(yes=True, allow_drift=True)
    assert record.exit_code == 0
    [candidate, up] = [c for c in world.fake.calls if c.op == "up" and c.stack == "staging"]
    # a plain up compares the program with the state: drift stays; the stage's first up refreshes
    assert (candidate.args["refresh"], up.args["refresh"]) == (True, False)
    assert not world.fake.preview_refresh("staging").drifted
    # Stages without drift update without a refresh.
    assert all(not c.args["refresh"] for c in world.fake.calls if c.op == "up" and c.stack != "staging")


def test_a_stale_lock_left_by_a_killed_update_is_a_refused_pending_gate(world: World) -> None:
    lock = world.fake.add_lock("staging", stale=True)
    record = world.run(yes=True)
    assert record.exit_code == 3
    gate = next(g for g in record.stages[1].gates if g.name == "pending")
    assert not gate.ok and "1 stale lock(s) left by a killed update" in gate.detail
    assert gate.items == (f"stale lock {lock.describe()}",)
    assert world.ups("staging") == []


def test_a_failing_pre_step_is_a_refused_gate(world: World) -> None:
    staging = _stage("staging", pre=("python -c \"import sys; print('migration 42 pending'); sys.exit(4)\"",))
    record = world.run(stages=(staging, _stage("prod")), yes=True)
    assert (record.exit_code, [s.result for s in record.stages]) == (3, ["refused", "not run"])
    gate = record.stages[0].gates[-1]
    assert (gate.name, gate.ok) == ("pre", False)
    assert gate.detail.endswith("exited with 4: migration 42 pending")
    assert record.stages[0].steps[0].tail == "migration 42 pending"
    assert world.ups("staging") == []


def test_the_source_must_be_healthy_before_its_release_moves_on(world: World) -> None:
    world.fake.add_history("dev", release=NEW, result="failed")
    record = world.run(stages=(_stage("staging"),))
    assert record.exit_code == 3
    assert record.stages[0].gates[-1].detail == (
        "the last update of dev (v2) failed; dev must be healthy before its release moves on"
    )
    assert world.ups("staging") == []


def test_release_must_match_when_asked_for(world: World) -> None:
    record = world.run(release="1234567", yes=True)
    assert record.exit_code == 3
    assert record.stages[0].gates[-1].detail == (
        "--release 1234567 was asked for, but Pulumi.dev.yaml holds release 5e6f7a8"
    )
    assert world.fake.count("up") == 0


# --- approval ---------------------------------------------------------------------------------------


def test_without_a_terminal_or_yes_a_stage_needing_approval_refuses_before_anything(world: World) -> None:
    record = world.run()
    assert (record.result, record.exit_code) == ("refused", 3)
    assert "prod needs approval and there is no terminal to ask on" in (record.reason or "")
    assert "`python -m automation promote --only prod --yes`" in (record.reason or "")
    assert world.fake.calls == [] and world.slack() == []


def test_locally_the_person_is_asked_and_a_no_stops_at_that_stage(world: World) -> None:
    questions: list[str] = []

    def answer(question: str) -> bool:
        questions.append(question)
        return False

    record = world.run(confirm=answer)
    assert questions == ["Promote release 5e6f7a8 to prod (1 update)?"]
    assert [s.result for s in record.stages] == ["deployed", "deployed", "refused"]
    assert record.exit_code == 3
    assert world.ups("prod") == [] and world.file_release("prod") == OLD


def test_locally_a_yes_at_the_prompt_deploys(world: World) -> None:
    record = world.run(confirm=lambda _: True)
    assert record.exit_code == 0
    assert next(g for g in record.stages[2].gates if g.name == "approval").override == "prompt"


def test_cli_in_ci_without_yes_exits_3_and_names_the_ci_pattern(
    world: World, promote_cli: PromoteCli
) -> None:
    result = promote_cli(world)
    assert result.exit_code == 3
    assert (
        "error: prod needs approval and there is no terminal to ask on (and no --yes). In CI, run each stage "
        "as its own job under its GitHub environment" in result.stderr
    )
    assert world.fake.count("up") == 0


def test_cli_asks_on_a_terminal(
    world: World,
    promote_cli: PromoteCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import automation.cli.promote

    monkeypatch.setattr(automation.cli.promote, "_interactive", lambda: True)
    result = promote_cli(world, "--only", "prod", input="n\n")
    assert result.exit_code == 3
    assert "Promote release 4f9c2d1 to prod (1 update)? [y/N]" in result.stderr
    assert world.fake.count("up") == 0


# --- failures and rollback ----------------------------------------------------------------------------


def test_a_health_failure_rolls_the_stage_back_and_leaves_later_stages_alone(world: World) -> None:
    world.stub.routes["/staging/jobs/health"] = 503

    def healthy_again(stack: str, release: Mapping[str, Any]) -> None:
        if stack == "staging" and _is_old(release):
            world.stub.routes["/staging/jobs/health"] = 200

    world.on_up.append(healthy_again)
    record = world.run(yes=True)

    assert (record.result, record.exit_code) == ("failed", 1)
    assert [s.result for s in record.stages] == ["deployed", "rolled back", "not run"]
    staging = record.stages[1]
    assert (staging.reason or "").startswith(
        "verification (release) failed: health check failed: "
        f"worker {world.stub.url}/staging/jobs/health: HTTP 503"
    )
    assert world.ups("staging") == [
        "candidate 5e6f7a8 on TEST from dev @fffffff",
        "promote 5e6f7a8 from dev @fffffff",
        "rollback to v1 (0000000)",
    ]
    assert world.fake.stack("staging").history[-1].release == OLD
    assert world.file_release("staging") == OLD
    assert staging.rollback is not None and staging.rollback.ok
    assert staging.rollback.verification is not None and staging.rollback.verification.bake is None
    assert [c for c in world.fake.calls if c.stack == "prod"] == []
    assert world.slack()[1:] == [
        ":rewind: staging rolled back to release `4f9c2d1`",
        ":x: Promotion of `5e6f7a8` failed at staging",
    ]
    failure = world.stub.posts(HOOK)[2]["blocks"][1]["elements"]
    assert failure[0]["text"].startswith("*why:* verification (release) failed: health check failed: worker")
    assert failure[1]["text"] == "*rollback:* done: staging is back on release 4f9c2d1 (v1 restored as v4)"


def test_an_alarm_during_the_canary_bake_rolls_prod_back_before_100_percent(
    stub: Stub, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_aws(monkeypatch, moto)
    cw = boto("cloudwatch", moto)
    alarm = moto_alarm(cw, "prod-5xx-canary", metric="5XXError", namespace="AWS/ApiGateway")
    world = make_world(
        stub, {s: stage_outputs(s, stub.url, alarms=(alarm,) if s == "prod" else ()) | SHARED for s in STAGES}
    )
    world.fake.add_history("staging", release=make_release("5e6f7a8", NEW["images"]))

    def errors_after_a_while(clock: FakeClock) -> None:
        if clock.slept >= 120:
            cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="Threshold Crossed: 7 5XX")

    world.clock.on_sleep.append(errors_after_a_while)
    record = world.run(stages=(_stage("prod"),), yes=True)

    assert (record.exit_code, record.stages[0].result) == (1, "rolled back"), record.stages[0].reason
    assert record.stages[0].reason == (
        "verification (canary) failed: alarm in ALARM during bake: prod-5xx-canary (Threshold Crossed: 7 5XX)"
    )
    written = world.releases_written("prod")
    assert [(w["version"], w.get("candidate")) for w in written] == [
        ("5e6f7a8", None),
        ("4f9c2d1", "5e6f7a8"),
        ("5e6f7a8", None),
        ("4f9c2d1", None),
    ]
    assert "canary" in written[0] and "canary" in written[2]  # never at 100 %: the rollback came first
    assert world.ups("prod") == [
        "candidate 5e6f7a8 on TEST from staging @fffffff",
        "promote 5e6f7a8 from staging (canary 10%) @fffffff",
        "rollback to v1 (0000000)",
    ]
    bake = record.stages[0].verifications[1].bake
    assert bake is not None and bake.seconds == 120 and bake.planned_seconds == 900


def test_a_failed_up_is_rolled_back(world: World) -> None:
    world.fake.fail("staging", "up", "creating Lambda alias: ResourceConflictException")
    record = world.run(yes=True)
    assert (record.exit_code, [s.result for s in record.stages]) == (
        1,
        ["deployed", "rolled back", "not run"],
    )
    assert record.stages[1].reason == "up failed: creating Lambda alias: ResourceConflictException"
    assert [u.result for u in record.stages[1].updates] == ["failed", "succeeded"]
    assert world.file_release("staging") == OLD


def test_a_failing_post_step_is_a_failed_verification_and_rolls_back(world: World) -> None:
    staging = _stage(
        "staging", post=("python -c \"import sys; print('e2e: checkout broken'); sys.exit(1)\"",)
    )
    record = world.run(stages=(staging,))
    assert (record.exit_code, record.stages[0].result) == (1, "rolled back")
    assert record.stages[0].reason == (
        "failed verification: post step `python -c \"import sys; print('e2e: "
        "checkout broken'); sys.exit(1)\"` exited with 1: e2e: checkout broken"
    )
    assert [v.phase for v in record.stages[0].verifications] == ["release", "post"]


def test_no_earlier_good_update_means_no_rollback_and_says_so(stub: Stub) -> None:
    world = make_world(stub)
    world.fake.stack("staging").history.clear()
    world.stub.routes["/staging/api/health"] = 500
    record = world.run(stages=(_stage("staging"),))
    assert (record.exit_code, record.stages[0].result) == (1, "failed")
    rollback = record.stages[0].rollback
    assert rollback is not None and not rollback.ok
    assert rollback.detail == (
        "no rollback possible: staging had no succeeded update before this promotion; nothing to go back to"
    )


def test_an_interrupted_up_is_cancelled_and_exits_130(world: World) -> None:
    world.fake.interrupt_up("staging")
    record = world.run(yes=True)
    assert (record.result, record.exit_code) == ("interrupted", 130)
    assert [s.result for s in record.stages] == ["deployed", "interrupted", "not run"]
    assert world.fake.count("cancel", "staging") == 1
    assert world.ups("prod") == []


# --- custom steps and notifications ------------------------------------------------------------------


def test_pre_and_post_steps_see_the_stack_outputs(world: World, tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    code = (
        "import json, os; json.dump({k: v for k, v in os.environ.items() if k.startswith('STAGELINE_')}, "
        f"open({str(seen)!r}, 'w')); print('checked', os.environ['STAGELINE_STACK'])"
    )
    staging = _stage(
        "staging", pre=(f"python -c {json.dumps(code)}",), post=(f"python -c {json.dumps(code)}",)
    )
    record = world.run(stages=(staging,))
    assert record.exit_code == 0
    env = json.loads(seen.read_text())
    assert env["STAGELINE_STACK"] == "staging"
    assert env["STAGELINE_API_URL"] == f"{world.stub.url}/staging"
    assert json.loads(env["STAGELINE_HEALTH_PATHS"]) == HEALTH
    assert json.loads(env["STAGELINE_LIVE_VERSIONS"]) == {"api": "4", "worker": "4"}  # post ran after up
    assert [s.tail for s in record.stages[0].steps] == ["checked staging"]
    assert record.stages[0].verifications[-1].steps[0].tail == "checked staging"


def test_a_webhook_that_is_down_never_fails_the_promotion(
    world: World,
    promote_cli: PromoteCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = closed_port_url() + HOOK
    monkeypatch.setenv("TEAM_SLACK", dead)
    result = promote_cli(world, "--only", "staging", "--slack-webhook-env", "TEAM_SLACK", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["notifications"] == {"sent": [], "failed": ["start", "success"]}
    assert "warning: Slack notification (start) not delivered: ConnectError" in result.stderr
    assert dead not in result.output and HOOK not in result.output


def test_cli_text_output_is_one_line_per_stage_and_the_verdict(world: World, promote_cli: PromoteCli) -> None:
    world.stub.routes["/dev/api/health"] = 503
    world.on_up.append(
        lambda stack, release: world.stub.routes.update(healthy_routes("dev")) if _is_old(release) else None
    )
    result = promote_cli(world, "--to", "staging")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["dev", "rolled", "back"]
    assert lines[1].split() == ["staging", "not", "run", "-"]
    assert lines[2].startswith("promotion failed (exit 1, ")
    # dev's post (E2E) step meets the failing API while the candidate is on TEST: APP never moved
    assert (
        "error: dev: the candidate failed on TEST: candidate step `python scripts/smoke.py` exited with 1"
        in (result.stderr)
    )
    assert result.stderr.rstrip().endswith("; APP was not changed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--release", "bad version"], "'bad version' is not a release version"),
        (["--allow-replace", "frontend-bucket"], "'frontend-bucket' is not a resource URN"),
        (["--only", "prod", "--from", "dev"], "--only cannot be combined with --from or --to"),
        (["--slack-webhook-env", "not-a-name"], "'not-a-name' is not an environment variable name"),
    ],
)
def test_cli_bad_arguments_exit_2(
    world: World,
    promote_cli: PromoteCli,
    args: list[str],
    message: str,
) -> None:
    result = promote_cli(world, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert world.fake.count("up") == 0


# --- a release nobody verified never moves on --------------------------------------------------------


def test_a_release_left_unverified_by_an_interrupted_run_is_checked_and_never_moves_on(world: World) -> None:
    """staging's promotion is cancelled while it verifies: staging runs the new release unverified.
    Re-running staging checks what it runs; promoting prod checks staging before taking its release."""
    world.fake.add_history("dev", release=NEW)  # dev verified NEW
    world.stub.routes["/staging/jobs/health"] = 503  # the new release's worker is broken

    def cancelled(clock: FakeClock) -> None:  # the CI job is cancelled while the check retries
        raise KeyboardInterrupt

    world.clock.on_sleep.append(cancelled)
    first = world.run(stages=(_stage("staging"),))
    assert (first.exit_code, first.stages[0].result) == (130, "interrupted")
    assert world.fake.stack("staging").history[-1].release == make_release("5e6f7a8", NEW["images"])
    world.clock.on_sleep.clear()

    again = world.run(stages=(_stage("staging"),))
    assert (again.result, again.exit_code, again.stages[0].result) == ("failed", 1, "failed")
    assert (again.stages[0].reason or "").startswith(
        "staging already runs release 5e6f7a8 but fails its checks: health check failed: worker "
        f"{world.stub.url}/staging/jobs/health: HTTP 503"
    )
    assert "`python -m automation rollback staging`" in (again.stages[0].reason or "")
    assert again.stages[0].rollback is None  # it deployed nothing, so it rolls nothing back
    assert len(world.ups("staging")) == 2  # the candidate on TEST, then APP

    prod = world.run(stages=(_stage("prod"),), yes=True)
    assert (prod.result, prod.exit_code, prod.stages[0].result) == ("refused", 3, "refused")
    gate = prod.stages[0].gates[-1]
    assert (gate.name, gate.ok) == ("source", False)
    assert gate.detail.startswith(
        "staging runs release 5e6f7a8 but fails its checks now: health check failed: worker "
    )
    assert gate.to_json()["verification"]["phase"] == "source"
    assert [c for c in world.fake.calls if c.stack == "prod"] == []


def test_a_source_whose_alarm_is_in_alarm_does_not_pass_its_release_on(
    stub: Stub, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_aws(monkeypatch, moto)
    cw = boto("cloudwatch", moto)
    alarm = moto_alarm(cw, "staging-errors-source-gate", state="ALARM", reason="Threshold Crossed: 12 errors")
    world = make_world(
        stub,
        {s: stage_outputs(s, stub.url, alarms=(alarm,) if s == "staging" else ()) | SHARED for s in STAGES},
    )
    world.fake.add_history("staging", release=make_release("5e6f7a8", NEW["images"]))
    record = world.run(stages=(_stage("prod"),), yes=True)
    assert (record.exit_code, record.stages[0].result) == (3, "refused")
    assert (
        record.stages[0]
        .gates[-1]
        .detail.startswith(
            "staging runs release 5e6f7a8 but fails its checks now: alarm in ALARM during bake: "
            "staging-errors-source-gate (Threshold Crossed: 12 errors)"
        )
    )
    assert world.fake.count("up") == 0
    assert world.clock.sleeps == []  # one look at the alarms, no bake

    cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="quiet")
    healthy = world.run(stages=(_stage("prod"),), yes=True)
    assert healthy.exit_code == 0
    source = healthy.stages[0].gates[0]
    assert source.detail == (
        "release 5e6f7a8 from staging v2; staging passes its checks "
        "(3 health check(s), 1 alarm(s) not in ALARM)"
    )


def test_a_source_verified_earlier_in_the_same_run_is_not_checked_again(world: World) -> None:
    record = world.run(yes=True)
    assert record.exit_code == 0
    assert [g.detail for s in record.stages for g in s.gates if g.name == "source"] == [
        "first stage: deploys release 5e6f7a8 from Pulumi.dev.yaml",
        "release 5e6f7a8 from dev v3",  # v2 ran it as a candidate on TEST, v3 in full
        "release 5e6f7a8 from staging v3",
    ]
    assert world.stub.hits("/dev/api/health") == 1  # dev's own verification only


# --- the stack file --------------------------------------------------------------------------------


class RewritingEngine(FakeEngine):
    """set_release rewrites Pulumi.<stack>.yaml as the Pulumi CLI does (`config set-all --json`):
    the same values, but re-serialised — key order changes and comments are gone."""

    def set_release(self, stack: str, release: Mapping[str, Any], *, work_dir: Path | None = None) -> None:
        import yaml

        super().set_release(stack, release, work_dir=work_dir)
        path = self.project_dir / f"Pulumi.{stack}.yaml"
        document = yaml.safe_load(path.read_text())
        document["config"]["stageline:release"] = json.loads(json.dumps(release))
        path.write_text(yaml.safe_dump(document, sort_keys=True))


def _repo_copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for path in ROOT.glob("Pulumi*.yaml"):
        (root / path.name).write_bytes(path.read_bytes())
    return root


def _rewriting_world(stub: Stub, root: Path) -> World:
    world = make_world(stub, root=root)
    engine = RewritingEngine.from_repo(root)
    engine.__dict__.update({k: v for k, v in world.fake.__dict__.items() if k != "_project_dir"})
    world.fake = engine
    return world


def test_a_refused_gate_puts_the_stack_file_back_byte_for_byte(stub: Stub, tmp_path: Path) -> None:
    root = _repo_copy(tmp_path)
    original = (root / "Pulumi.staging.yaml").read_bytes()
    assert b"# With an S3 state backend" in original  # comments the CLI's rewrite drops
    world = _rewriting_world(stub, root)
    world.fake.add_history("dev", release=NEW)
    _iam(world)
    record = world.run(stages=(_stage("staging"),), yes=True)
    assert record.exit_code == 3
    assert [w["version"] for w in world.releases_written("staging")] == ["5e6f7a8", "4f9c2d1"]
    assert (root / "Pulumi.staging.yaml").read_bytes() == original


def test_a_failure_before_the_up_puts_the_stack_file_back_byte_for_byte(stub: Stub, tmp_path: Path) -> None:
    root = _repo_copy(tmp_path)
    original = (root / "Pulumi.staging.yaml").read_bytes()
    world = _rewriting_world(stub, root)
    world.fake.add_history("dev", release=NEW)
    world.fake.stack("staging").outputs[out.ECR_REPOSITORY_URL] = "registry.example/stageline"
    record = world.run(stages=(_stage("staging"),), yes=True)
    assert (record.exit_code, record.stages[0].result) == (1, "failed")
    assert "is not an ECR repository URL" in (record.stages[0].reason or "")
    assert world.fake.count("up") == 0
    assert (root / "Pulumi.staging.yaml").read_bytes() == original


# --- frontend caches ---------------------------------------------------------------------------------


def test_every_up_that_switches_the_release_invalidates_the_frontend_caches(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import automation.operate.frontend_cache

    seen: list[tuple[str, int]] = []  # (stack, ups so far on it) at each invalidation

    def invalidate(outputs: Mapping[str, Any], *, warn: Any = None, **_: Any) -> list[str]:
        stack = outputs[out.ENVIRONMENT]
        seen.append((stack, world.fake.count("up", stack)))
        return [f"I{len(seen)}"]

    monkeypatch.setattr(automation.operate.frontend_cache, "invalidate_frontend", invalidate)
    world.stub.routes["/prod/jobs/health"] = 503
    world.on_up.append(
        lambda stack, release: world.stub.routes.update(healthy_routes("prod")) if _is_old(release) else None
    )
    record = world.run(yes=True)
    assert [s.result for s in record.stages] == ["deployed", "deployed", "rolled back"]
    # after each stage's candidate up (TEST moves), dev's and staging's up, prod's canary up and
    # prod's rollback up
    assert seen == [
        ("dev", 1),
        ("dev", 2),
        ("staging", 1),
        ("staging", 2),
        ("prod", 1),
        ("prod", 2),
        ("prod", 3),
    ]
    assert [(u.phase, u.invalidations) for u in record.stages[2].updates] == [
        ("candidate", ["I5"]),
        ("canary", ["I6"]),
        ("rollback", ["I7"]),
    ]
    assert record.stages[0].to_json()["updates"][1]["invalidations"] == ["I2"]


# --- reporting ---------------------------------------------------------------------------------------


def test_a_bake_with_no_alarms_to_watch_is_a_loud_warning_in_the_record(world: World) -> None:
    world.fake.add_history("dev", release=NEW)
    record = world.run(stages=(_stage("staging"),))
    assert record.exit_code == 0
    assert record.stages[0].notes == [
        "staging exports no alarmNames: its 300 s bake watches nothing, so only the health checks "
        "verify this release"
    ]


def test_cli_a_refused_gate_lists_what_to_review_on_stderr(world: World, promote_cli: PromoteCli) -> None:
    _iam(world)
    result = promote_cli(world, "--only", "staging", "--yes")
    assert result.exit_code == 3
    prefix = "urn:pulumi:staging::stageline::"
    lines = result.stderr.splitlines()
    error = lines.index(
        "error: staging: iam gate refused: 2 change(s) may widen IAM permissions or trust; review them and "
        "pass --approve-iam"
    )
    assert lines[error + 1 :] == [
        f"  update {prefix}aws:iam/role:Role::staging-api-role (inlinePolicies[0].policy)",
        f"  create {prefix}aws:lambda/permission:Permission::staging-api-invoke",
    ]


def test_cli_out_records_why_nothing_ran_when_the_engine_cannot_open(
    invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import automation.engine.protocol
    from automation.errors import ConfigurationError

    def unavailable() -> FakeEngine:
        raise ConfigurationError("cannot run the pulumi CLI: not found on PATH")

    monkeypatch.setattr(automation.engine.protocol, "engine_factory", unavailable)
    record_file = tmp_path / "promotion.json"
    result = invoke(["promote", "--only", "staging", "--yes", "--out", str(record_file)])
    assert result.exit_code == 2
    assert "error: cannot run the pulumi CLI: not found on PATH" in result.stderr
    document = json.loads(record_file.read_text())
    assert (document["result"], document["exitCode"], document["reason"]) == (
        "failed",
        2,
        "cannot run the pulumi CLI: not found on PATH",
    )
    assert [(s["stack"], s["result"]) for s in document["stages"]] == [("staging", "not run")]
    assert document["pipeline"] == list(STAGES)


def _half_finished_canary(world: World, release: dict[str, Any]) -> None:
    """staging ran OLD in full, then `release` as a 10 % canary whose promotion was stopped mid-bake."""
    world.fake.add_history(
        "staging",
        release={**release, "canary": {"weight": 0.1, "stableVersions": {"api": "3", "worker": "3"}}},
        message="promote (canary 10%)",
    )


def test_an_unfinished_canary_of_another_release_is_refused_naming_both_ways_out(stub: Stub) -> None:
    world = make_world(stub)
    half = make_release("9a9a9a9", {"api": "sha256:" + "e" * 64, "worker": "sha256:" + "f" * 64})
    _half_finished_canary(world, half)
    file_before = world.file_release("staging")
    record = world.run(stages=(_stage("staging"),))
    assert record.exit_code == 3
    stage = record.stages[0]
    assert stage.result == "refused" and stage.gates[-1].name == "canary"
    assert stage.reason == (
        "staging runs an unfinished canary: release 9a9a9a9 on 10% of the traffic since v2 (a promotion "
        "stopped before it finished); finish it (`python -m automation promote --only staging --release "
        "9a9a9a9`) or revert it (`python -m automation rollback staging`) before promoting release 4f9c2d1"
    )
    assert world.ups("staging") == [] and world.releases_written("staging") == []
    assert world.file_release("staging") == file_before


def test_promoting_the_same_release_finishes_an_unfinished_canary(world: World) -> None:
    world.fake.add_history("dev", release=NEW)  # dev runs NEW; staging stopped mid-canary of it
    _half_finished_canary(world, NEW)
    record = world.run(stages=(_stage("staging"),))
    assert record.exit_code == 0, record.reason
    stage = record.stages[0]
    assert stage.result == "deployed"
    assert [v.phase for v in stage.verifications] == ["canary", "release"]  # the canary as it ran, then 100 %
    assert world.ups("staging") == ["promote 5e6f7a8 from dev @fffffff"]  # one update: to 100 %
    assert world.releases_written("staging") == [make_release("5e6f7a8", NEW["images"])]
    assert stage.notes[0].startswith("finishing the unfinished canary: release 5e6f7a8 on 10% of the traffic")
    assert "canary" not in world.fake.get_release("staging")


def test_an_unfinished_canary_that_fails_its_checks_is_rolled_back_to_the_release_before_it_in_full(
    world: World,
) -> None:
    world.fake.add_history("dev", release=NEW)
    _half_finished_canary(world, NEW)
    world.stub.routes["/staging/api/health"] = 500
    record = world.run(stages=(_stage("staging"),))
    assert record.exit_code == 1
    rollback = record.stages[0].rollback
    assert rollback is not None and (rollback.to_version, rollback.release) == (1, "4f9c2d1")
    assert "canary" not in world.fake.get_release("staging")
    assert world.ups("staging") == ["rollback to v1 (0000000)"]  # never moved to 100 % first


def test_exhausted_lock_retries_end_the_stage_without_a_rollback(world: World) -> None:
    """Another update (a manual rollback, say) holds staging's lock through every retry: our up never
    started, so nothing is rolled back — a rollback would undo whoever holds the lock once it frees."""
    world.fake.add_history("dev", release=NEW)
    file_before = world.file_release("staging")
    world.fake.lock("staging", times=2)  # the world's retry policy tries twice
    record = world.run(stages=(_stage("staging"),))
    assert record.exit_code == 1
    stage = record.stages[0]
    assert stage.result == "failed" and stage.rollback is None
    assert stage.reason.startswith(
        "up (candidate) never started: staging is still locked by another update after 2"
    )
    assert stage.reason.endswith("nothing was deployed to staging, so nothing was rolled back")
    assert [(u.phase, u.result) for u in stage.updates] == [("candidate", "locked")]
    assert world.fake.count("up", "staging") == 2 and len(world.fake.history("staging")) == 1
    assert world.file_release("staging") == file_before  # the file says what runs again
    assert world.slack()[-1] == ":x: Promotion of `5e6f7a8` failed at staging"


def test_exhausted_lock_retries_after_the_canary_leave_it_for_the_next_run(world: World) -> None:
    original_up = world.fake.up
    calls = {"n": 0}

    def up(stack: str, **kwargs: Any) -> Any:
        if stack == "prod":
            calls["n"] += 1
            if calls["n"] > 2:  # the candidate and the canary went out; the move to 100 % meets the lock
                world.fake.lock("prod", times=1)
        return original_up(stack, **kwargs)

    world.fake.up = up  # type: ignore[method-assign]
    record = world.run(yes=True)
    assert record.exit_code == 1
    prod = record.stages[2]
    assert prod.rollback is None and [(u.phase, u.result) for u in prod.updates] == [
        ("candidate", "succeeded"),
        ("canary", "succeeded"),
        ("full", "locked"),
    ]
    assert prod.reason.endswith(
        "prod still runs the canary (10% on release 5e6f7a8): rerun `python -m automation promote --only "
        "prod` to finish it, or `python -m automation rollback prod` to revert it"
    )
    assert world.file_release("prod")["canary"]["weight"] == 0.1  # the file says what runs: the canary


# --- TEST before APP ---------------------------------------------------------------------------------


def _deployed_releases(world: World, stack: str) -> list[dict[str, Any]]:
    """The release of every update the engine ran on `stack` (what was deployed, not the file)."""
    return [dict(r.release or {}) for r in world.fake.stack(stack).history]


def test_a_frontend_failing_on_test_never_changes_app_and_puts_test_back_on_live(world: World) -> None:
    world.fake.add_history("dev", release=NEW)  # dev runs NEW: staging receives it
    world.stub.routes["/staging-test/"] = 500  # the new release's frontend, served by TEST, is broken
    world.on_up.append(
        lambda stack, release: world.stub.routes.update({"/staging-test/": 200}) if _is_old(release) else None
    )
    record = world.run(stages=(_stage("staging"),), yes=True)
    assert record.exit_code == 1
    staging = record.stages[0]
    assert staging.result == "rolled back"
    assert staging.reason is not None and staging.reason.startswith(
        f"the candidate failed on TEST: health check failed: frontend {world.stub.url}/staging-test/: "
        "HTTP 500"
    )
    assert staging.reason.endswith("; APP was not changed")
    assert [(u.phase, u.result) for u in staging.updates] == [
        ("candidate", "succeeded"),
        ("rollback", "succeeded"),
    ]
    # every update staging ran kept APP on OLD: the candidate moved TEST only, the rollback moved it back
    assert [(r["version"], r.get("candidate")) for r in _deployed_releases(world, "staging")] == [
        ("4f9c2d1", None),
        ("4f9c2d1", "5e6f7a8"),
        ("4f9c2d1", None),
    ]
    assert world.file_release("staging") == OLD
    assert staging.rollback is not None and staging.rollback.ok


def test_the_stages_e2e_steps_run_against_test_with_test_domain_before_app_moves(
    world: World, tmp_path: Path
) -> None:
    seen = tmp_path / "seen.json"
    probe = (
        f"{sys.executable} -c \"import json, os; open({str(seen)!r}, 'a').write(json.dumps("
        "[os.environ['STAGELINE_PHASE'] if 'STAGELINE_PHASE' in os.environ else 'post', "
        "os.environ.get('TEST_DOMAIN'), os.environ['STAGELINE_TEST_DOMAIN']]) + chr(10))\""
    )
    world.fake.add_history("dev", release=NEW)
    record = world.run(stages=(_stage("staging", post=(probe,)),), yes=True)
    assert record.exit_code == 0, record.reason
    runs = [json.loads(line) for line in seen.read_text().splitlines()]
    domain = f"{world.stub.url}/staging-test"
    assert runs == [["candidate", domain, domain], ["post", None, domain]]
    phases = [v.phase for v in record.stages[0].verifications]
    assert phases == ["candidate", "release", "post"]


def test_a_failing_e2e_step_on_test_rolls_back_before_app_moves(world: World) -> None:
    failing = (
        f'{sys.executable} -c "import os, sys; '
        "sys.exit(1 if os.environ.get('STAGELINE_PHASE') == 'candidate' else 0)\""
    )
    world.fake.add_history("dev", release=NEW)
    record = world.run(stages=(_stage("staging", post=(failing,)),), yes=True)
    assert record.exit_code == 1
    assert record.stages[0].result == "rolled back"
    assert (record.stages[0].reason or "").startswith("the candidate failed on TEST: candidate step")
    assert all(r["version"] == "4f9c2d1" for r in _deployed_releases(world, "staging"))


def test_no_candidate_phase_when_the_frontend_release_does_not_change(world: World) -> None:
    world.fake.add_history("dev", release=NEW)
    world.fake.add_history("staging", release=NEW)  # staging already runs NEW: nothing for TEST to show
    world.fake.set_preview("staging", [])
    record = world.run(stages=(_stage("staging"),), yes=True)
    assert record.exit_code == 0 and record.stages[0].result == "unchanged"
    assert world.ups("staging") == []


# --- the policy pack under the engine -----------------------------------------------------------------


def test_a_mandatory_policy_violation_refuses_the_stage_and_restores_the_stack_file(
    world: World, tmp_path: Path
) -> None:
    from automation.engine.model import PolicyResult

    world.fake.add_history("dev", release=NEW)
    before = world.file_release("staging")
    pack = tmp_path / "policy"
    pack.mkdir()
    violation = PolicyResult(
        "log-retention",
        urn("staging", "aws:cloudwatch/logGroup:LogGroup", "api-logs"),
        "mandatory",
        "set a retention",
    )
    world.fake.set_policy("staging", [violation])
    record = world.run(stages=(_stage("staging"),), yes=True, policy_packs=(pack,))
    assert record.exit_code == 3
    stage = record.stages[0]
    assert stage.result == "refused" and stage.gates[-1].name == "policy"
    assert stage.gates[-1].items == (violation.describe(),)
    assert "the policy pack refused it: log-retention: api-logs: set a retention" in (stage.reason or "")
    assert world.ups("staging") == [] and world.file_release("staging") == before
    [preview] = [c for c in world.fake.calls if c.op == "preview" and c.stack == "staging"]
    assert preview.args["policy_packs"] == [str(pack)]

    world.fake.set_policy("staging", [])
    passed = world.run(stages=(_stage("staging"),), yes=True, policy_packs=(pack,))
    assert passed.exit_code == 0
    assert (
        next(g for g in passed.stages[0].gates if g.name == "policy").detail == "no mandatory policy violated"
    )
    assert all(c.args["policy_packs"] == [str(pack)] for c in world.fake.calls if c.op == "up")


# --- the approver's preview ---------------------------------------------------------------------------


def _preview(world: World, stage: Stage, **options: Any) -> PromotionRecord:
    from automation.promote.run import preview_promotion

    rt = Runtime(
        engine=world.fake,
        root=world.root,
        notifier=Notifier(world.stub.url + HOOK, warn=lambda _: None),
        progress=lambda _: None,
        clock=world.clock,
        retry=RetryPolicy(tries=2, base_delay=0),
        echo_steps=False,
        commit="f" * 40,
    )
    return preview_promotion((stage,), PIPELINE.names, PromoteOptions(**options), rt)


def test_the_approvers_preview_shows_the_release_gates_and_changes_and_changes_nothing(world: World) -> None:
    from automation.promote.run import approver_markdown

    world.fake.add_history("staging", release=NEW)
    file_before = (world.root / "Pulumi.prod.yaml").read_bytes()
    record = _preview(world, _stage("prod"))
    assert (record.result, record.exit_code) == ("previewed", 0)
    [prod] = record.stages
    assert [g.name for g in prod.gates] == ["source", "pending", "drift", "replace", "iam", "approval"]
    assert all(g.ok for g in prod.gates)
    # read-only: no copy, no up, nobody told; the stack file written for the preview is put back
    assert world.ups("prod") == [] and world.slack() == []
    assert world.file_release("prod") == OLD
    assert (world.root / "Pulumi.prod.yaml").read_bytes() == file_before
    md = approver_markdown(record)
    assert md.startswith("## Approver's preview: release `5e6f7a8`\n")
    assert "### prod: 4f9c2d1 → 5e6f7a8 — every gate passes" in md
    assert "Changes: 1 to update, 11 unchanged" in md
    assert "| iam | ✅ | no IAM-widening change |" in md
    assert "| prod-api | `aws:lambda/function:Function` | `imageUri` |  |" in md


def test_the_approvers_preview_lists_every_gate_that_would_refuse(world: World, tmp_path: Path) -> None:
    from automation.engine.model import PolicyResult
    from automation.promote.run import approver_markdown

    world.fake.add_history("staging", release=NEW)
    world.fake.set_preview(
        "prod",
        [
            step("prod", "update", "aws:iam/role:Role", "prod-api-role", changed=["inlinePolicies"]),
            step("prod", "delete", "aws:s3/bucket:Bucket", "prod-data"),
        ],
    )
    advisory = PolicyResult(
        "cost-tags", urn("prod", "aws:s3/bucket:Bucket", "prod-data"), "advisory", "tag it"
    )
    world.fake.set_policy("prod", [advisory])
    pack = tmp_path / "policy"
    pack.mkdir()
    record = _preview(world, _stage("prod"), policy_packs=(pack,))
    assert (record.result, record.exit_code) == ("refused", 3)
    verdicts = {g.name: g.ok for g in record.stages[0].gates}
    assert verdicts == {
        "source": True,
        "pending": True,
        "drift": True,
        "policy": True,
        "replace": False,
        "iam": False,
        "approval": True,
    }
    md = approver_markdown(record)
    assert "### prod: 4f9c2d1 → 5e6f7a8 — **refused**" in md
    assert "| replace | ❌ |" in md and "| iam | ❌ |" in md
    assert f"- policy: `cost-tags (advisory) {advisory.urn}: tag it`" in md
    assert f"- iam: `update {urn('prod', 'aws:iam/role:Role', 'prod-api-role')} (inlinePolicies)`" in md


def test_a_mandatory_policy_violation_shows_in_the_approvers_preview(world: World, tmp_path: Path) -> None:
    from automation.engine.model import PolicyResult

    world.fake.add_history("staging", release=NEW)
    violation = PolicyResult(
        "prod-reviewers",
        urn("prod", "github:index/repositoryEnvironment:RepositoryEnvironment", "env"),
        "mandatory",
        "needs reviewers",
    )
    world.fake.set_policy("prod", [violation])
    pack = tmp_path / "policy"
    pack.mkdir()
    record = _preview(world, _stage("prod"), policy_packs=(pack,))
    assert record.exit_code == 3
    policy = next(g for g in record.stages[0].gates if g.name == "policy")
    assert not policy.ok and policy.items == (violation.describe(),)
    assert world.file_release("prod") == OLD


def test_cli_promote_preview_writes_the_run_summary(
    world: World, promote_cli: PromoteCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.fake.add_history("staging", release=NEW)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = promote_cli(world, "--only", "prod", "--preview")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("approver's preview: every gate passes (exit 0")
    assert summary.read_text().startswith("## Approver's preview: release `5e6f7a8`")
    assert world.fake.count("up") == 0 and world.fake.count("set_release", "prod") == 2  # written, put back
    both = promote_cli(world, "--only", "prod", "--preview", "--plan")
    assert both.exit_code == 2 and "--plan and --preview" in both.stderr
