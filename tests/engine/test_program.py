"""The real program under the real engine, run the way a user runs it.

Every engine call here is a subprocess started from the root of a repository copy (a git checkout of
the project, `tests/standin/harness.copy_repo`): `pulumi …` with the backend the driver uses by default
(`file://<copy>/.stageline/state`, empty passphrase), and `.venv/bin/python -m automation …` with the
driver's own defaults. The stand-in provider plugins keep what they create in a stand-in cloud on
disk, which the tests read to prove what the engine did, and edit to make drift.

Each `up` of the full program costs about 10 s on a 2-core machine, so the tests that only read share
one deployment per module:

* `shipped`: the shipped stack files, dev deployed with `pulumi up`, its API and distributions pointed
  at a local HTTP server (`endpoint`, through the stand-in provider's STAGELINE_STANDIN_ENDPOINT); read
  by the deployment, no-op, prod preview, fresh-clone, clean-policy and unchanged-promotion tests.
* `secret_dev`: dev with `stageline:slackWebhookUrl` set as a secret, deployed with the driver; read by
  the secrets test, then edited behind the engine's back by the drift test (its last user).

The policy and secrets-provider tests make their own copies (the latter with moto's KMS on 127.0.0.1).
Under `pytest -n 2` a worker that runs any test of a fixture builds that fixture itself, so no test
depends on another having run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.simulate import simulate_stack_file
from tests.engine.conftest import needs_cli
from tests.standin.cloud import Cloud
from tests.standin.harness import cli, copy_repo, environment, git

pytestmark = [pytest.mark.engine, needs_cli]

ACCOUNT = "123456789012"  # the stand-in cloud's account (infra.simulate.ACCOUNT_ID)
OIDC_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
# The stand-in github plugin, like the real one, refuses to write without a token.
GITHUB_TOKEN = "ghp_standin0token0for0engine0tests00"
SLACK_URL = "https://hooks.slack.com/services/T0/B0/abcdefsecret"
SLACK_SECRET = "abcdefsecret"  # the part of it that must never be printed
KMS_ALIAS = "alias/stageline-dev"
KMS_PROVIDER = f"awskms://{KMS_ALIAS}?region=eu-west-1"

ROLE = "aws:iam/role:Role"
OIDC_PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
FUNCTION = "aws:lambda/function:Function"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ENV_VARIABLE = "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable"
ENV_SECRET = "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret"
STACK_TYPE = "pulumi:pulumi:Stack"
TIMEOUT = 300


def trust_policy(*subjects: str) -> dict[str, Any]:
    """The trust policy the program declares for a GitHub role, written out by hand (not computed)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GitHubActions",
                "Effect": "Allow",
                "Principal": {"Federated": OIDC_ARN},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                        "token.actions.githubusercontent.com:sub": subjects[0]
                        if len(subjects) == 1
                        else list(subjects),
                    }
                },
            }
        ],
    }


# --- running things as a user would -----------------------------------------------------------


@dataclass
class Checkout:
    """A repository copy, its stand-in cloud, and the environment its commands run with."""

    root: Path
    cloud: Cloud
    env: dict[str, str]  # for the driver: no backend URL, no passphrase (it picks its defaults)
    outputs: list[str] = field(default_factory=list)  # every stdout and stderr so far (the secrets test)

    @property
    def state(self) -> Path:
        return self.root / ".stageline" / "state"

    def cli_env(self) -> dict[str, str]:
        """The driver's default backend, as `pulumi login file://$PWD/.stageline/state` would select it."""
        return {**self.env, "PULUMI_BACKEND_URL": self.state.as_uri(), "PULUMI_CONFIG_PASSPHRASE": ""}

    def run(
        self,
        argv: Sequence[str],
        *,
        expect: int | None = 0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(argv),
            cwd=cwd or self.root,
            env=dict(env if env is not None else self.env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        self.outputs += [done.stdout, done.stderr]
        if expect is not None and done.returncode != expect:
            pytest.fail(
                f"{' '.join(argv)} exited {done.returncode}, expected {expect}\n"
                f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
            )
        return done

    def pulumi(self, *args: str, expect: int | None = 0, **kw: Any) -> subprocess.CompletedProcess[str]:
        env = kw.pop("env", None) or self.cli_env()
        return self.run(["pulumi", *args], expect=expect, env=env, **kw)

    def driver(self, *args: str, expect: int | None = 0, **kw: Any) -> subprocess.CompletedProcess[str]:
        python = (kw.get("cwd") or self.root) / ".venv" / "bin" / "python"
        return self.run([str(python), "-m", "automation", *args], expect=expect, **kw)

    def export(self, stack: str = "dev") -> dict[str, Any]:
        return dict(json.loads(self.pulumi("stack", "export", "-s", stack).stdout)["deployment"])


def make_checkout(base: Path, pulumi_home: Path, **extra: str) -> Checkout:
    if cli() is None:
        pytest.skip("needs the Pulumi CLI on PATH (scripts/build-engine.sh)")
    cloud = base / "cloud"
    cloud.mkdir()
    env = environment(pulumi_home, cloud)
    env.update({"GITHUB_TOKEN": GITHUB_TOKEN, "STAGELINE_LOCK_BACKOFF": "0", **extra})
    env.pop("GITHUB_STEP_SUMMARY", None)
    checkout = Checkout(root=copy_repo(base / "repo"), cloud=Cloud(cloud), env=env)
    checkout.state.mkdir(parents=True)  # docs/workflows.md, "Choose a state backend"
    dev_manages_github(checkout.root)
    return checkout


def dev_manages_github(root: Path) -> None:
    """In the copy, dev publishes its GitHub variables and secrets as staging does (under review).

    The shipped dev holds no GitHub token (its job is unreviewed); these tests exercise the GitHub
    side through dev, so the copy gives dev a reviewer and turns management on.
    """
    path = root / "Pulumi.dev.yaml"
    document = yaml.safe_load(path.read_text())
    github = document["config"]["stageline:github"]
    github["manage"] = True
    github["environment"]["reviewers"] = {"teams": ["platform"]}
    github["environment"]["preventSelfReview"] = True
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    git(root, "commit", "-q", "-m", "dev manages GitHub in the engine tests", "--", "Pulumi.dev.yaml")


def json_documents(text: str) -> list[dict[str, Any]]:
    """Every JSON document in `text`: `pulumi up --json` streams one engine event per line."""
    decoder = json.JSONDecoder()
    found, at = [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return found
        document, at = decoder.raw_decode(text, at)
        found.append(document)


def summary_event(text: str) -> dict[str, Any]:
    [summary] = [d["summaryEvent"] for d in json_documents(text) if "summaryEvent" in d]
    return dict(summary)


def changes(counts: Mapping[str, int]) -> dict[str, int]:
    return {op: n for op, n in counts.items() if n}


def identities(resources: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(type, logical name) of each resource but the stack itself."""
    return {(r["type"], r["urn"].rsplit("::", 1)[-1]) for r in resources if r["type"] != STACK_TYPE}


def rendered(root: Path, stack: str) -> set[tuple[str, str]]:
    """What the same program declares under the in-process mocks (`python -m automation render`)."""
    return {(r.type, r.name) for r in simulate_stack_file(root, stack).resources}


def custom_urns(resources: Sequence[Mapping[str, Any]]) -> set[str]:
    return {r["urn"] for r in resources if r.get("custom") and not r["type"].startswith("pulumi:providers:")}


def state_files(state: Path) -> dict[str, str]:
    """Every file of a file:// backend but its lock files, with a hash of its bytes."""
    return {
        str(p.relative_to(state)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(state.rglob("*"))
        if p.is_file() and "locks" not in p.relative_to(state).parts
    }


def clone(source: Path, target: Path) -> Path:
    """A fresh `git clone` with the project's virtualenv, as a colleague's checkout would have one."""
    subprocess.run(["git", "clone", "-q", str(source), str(target)], check=True, capture_output=True)
    (target / ".venv").symlink_to((source / ".venv").resolve(), target_is_directory=True)
    (target / ".git" / "info" / "exclude").write_text(".venv\n")
    return target


# --- shipped: the shipped stack files, dev deployed with `pulumi up` -----------------------------


@dataclass
class Deployed:
    checkout: Checkout
    first_up: dict[str, Any]  # the summary event of the first `pulumi up`


@dataclass
class Endpoint:
    """A local HTTP server answering 200 to every GET: the stand-in API and CloudFront distributions.
    A path one of `failing` accepts is answered 500 (a broken release, as a test arranges it)."""

    url: str
    seen: list[str]
    failing: list[Callable[[str], bool]] = field(default_factory=list)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    seen: list[str] = []
    failing: list[Callable[[str], bool]] = []

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(500 if any(broken(self.path) for broken in list(failing)) else 200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Endpoint(f"http://127.0.0.1:{server.server_port}", seen, failing)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory, pulumi_home: Path, endpoint: Endpoint) -> Deployed:
    # The stand-in provider points the API's and the distributions' addresses at the local server.
    checkout = make_checkout(
        tmp_path_factory.mktemp("shipped"), pulumi_home, STAGELINE_STANDIN_ENDPOINT=endpoint.url
    )
    checkout.pulumi("stack", "init", "dev")
    up = checkout.pulumi("up", "-s", "dev", "--yes", "--skip-preview", "--json")
    return Deployed(checkout, summary_event(up.stdout))


def test_pulumi_up_deploys_the_real_program_and_a_second_up_changes_nothing(shipped: Deployed) -> None:
    checkout, cloud = shipped.checkout, shipped.checkout.cloud
    state = checkout.export()["resources"]
    # The engine deployed exactly what the program declares under the mocks (check, render, parity).
    assert identities(state) == rendered(checkout.root, "dev")
    assert shipped.first_up["result"] == "succeeded"
    assert changes(shipped.first_up["resourceChanges"]) == {"create": len(state)}
    # Every custom resource but the providers is in the cloud, and nothing else is.
    in_cloud = cloud.resources(stack="dev")
    assert {r.urn for r in in_cloud} == custom_urns(state)
    assert len(in_cloud) == len(custom_urns(state)) > 80

    # The trust the program declares, as the cloud holds it: one repository, one environment each.
    (provider,) = cloud.resources(OIDC_PROVIDER, stack="dev")
    assert provider.output("arn") == OIDC_ARN
    assert provider.output("clientIdLists") == ["sts.amazonaws.com"]
    deploy = cloud.find(ROLE, "stageline-dev-deploy")
    preview = cloud.find(ROLE, "stageline-dev-preview")
    assert deploy is not None and preview is not None
    assert json.loads(deploy.output("assumeRolePolicy")) == trust_policy(
        "repo:acme-shop/storefront:environment:dev"
    )
    assert json.loads(preview.output("assumeRolePolicy")) == trust_policy(
        "repo:acme-shop/storefront:pull_request", "repo:acme-shop/storefront:environment:dev-readonly"
    )
    # Outputs flow across resources and out: the role's ARN is the stack's and the GitHub variable's.
    outputs = json.loads(checkout.pulumi("stack", "output", "-s", "dev", "--json").stdout)
    assert (
        outputs["deployRoleArn"]
        == deploy.output("arn")
        == f"arn:aws:iam::{ACCOUNT}:role/stageline-dev-deploy"
    )
    variable = cloud.find(ENV_VARIABLE, "github-var-AWS_ROLE_ARN")
    assert variable is not None and variable.output("value") == outputs["deployRoleArn"]
    assert outputs["publishedVersions"] == outputs["liveVersions"] == {"api": "1", "worker": "1"}
    # The shipped release runs the example app's zip packages from the artifact bucket, named by hash.
    release = yaml.safe_load((checkout.root / "Pulumi.dev.yaml").read_text())["config"]["stageline:release"]
    for service, digest in release["packages"].items():
        fn = cloud.find(FUNCTION, f"stageline-dev-{service}")
        assert fn is not None
        assert (fn.output("packageType"), fn.output("s3Bucket")) == ("Zip", outputs["artifactBucket"])
        assert fn.output("s3Key") == f"packages/{service}/{digest.removeprefix('sha256:')}.zip"
        assert base64.b64decode(fn.output("codeSha256")).hex() == digest.removeprefix("sha256:")
        assert fn.output("environment.variables.STAGELINE_PACKAGE") == digest

    operations = cloud.operations()
    again = summary_event(checkout.pulumi("up", "-s", "dev", "--yes", "--skip-preview", "--json").stdout)
    assert again["result"] == "succeeded"
    assert changes(again["resourceChanges"]) == {"same": len(state)}
    assert cloud.operations() == operations  # not one create, update or delete


def _encodings(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        raw.hex(),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        json.dumps(secret)[1:-1],
    }


def test_the_github_token_is_in_no_state_in_any_form(shipped: Deployed) -> None:
    """The job's GITHUB_TOKEN reached the provider (it created GitHub resources) but not the state."""
    checkout = shipped.checkout
    assert checkout.cloud.find(ENV_VARIABLE, "github-var-AWS_ROLE_ARN")  # the token was used
    shown = checkout.pulumi("stack", "export", "-s", "dev", "--show-secrets").stdout
    plain = checkout.pulumi("stack", "export", "-s", "dev").stdout
    for text in (shown, plain):
        for form in _encodings(GITHUB_TOKEN):
            assert form not in text
    (provider,) = [
        r for r in json.loads(shown)["deployment"]["resources"] if r["type"] == "pulumi:providers:github"
    ]
    # Not in a secret envelope either: the provider has no token property at all.
    assert "token" not in provider.get("inputs", {}) and "token" not in provider.get("outputs", {})


def test_the_mocks_give_every_resource_the_urn_the_engine_gives_it(shipped: Deployed) -> None:
    checkout = shipped.checkout
    engine = {r["urn"] for r in checkout.export()["resources"] if r["type"] != STACK_TYPE}
    assert {r.urn for r in simulate_stack_file(checkout.root, "dev").resources} == engine


def test_pulumi_preview_of_prod_plans_every_resource_the_program_declares(shipped: Deployed) -> None:
    checkout = shipped.checkout
    checkout.pulumi("stack", "init", "prod")
    preview = json.loads(checkout.pulumi("preview", "-s", "prod", "--json").stdout)
    declared = rendered(checkout.root, "prod")
    assert changes(preview["changeSummary"]) == {"create": len(declared) + 1}  # and the stack itself
    assert identities([s["newState"] for s in preview["steps"]]) == declared
    assert [d for d in preview["diagnostics"] if d["severity"] == "error"] == []
    assert checkout.cloud.resources(stack="prod") == []  # a preview creates nothing


def test_read_only_commands_from_a_fresh_clone_write_nothing(shipped: Deployed, tmp_path: Path) -> None:
    """A colleague's clone, where Pulumi.dev.yaml has no `encryptionsalt` (it was never committed)."""
    checkout = shipped.checkout
    colleague = clone(checkout.root, tmp_path / "clone")
    assert "encryptionsalt" not in (colleague / "Pulumi.dev.yaml").read_text()
    assert "encryptionsalt" in (checkout.root / "Pulumi.dev.yaml").read_text()  # `stack init` wrote it there
    env = {**checkout.env, "PULUMI_BACKEND_URL": checkout.state.as_uri(), "PULUMI_CONFIG_PASSPHRASE": ""}
    before = state_files(checkout.state)

    preview = checkout.driver("preview", "dev", "--json", env=env, cwd=colleague)
    assert json.loads(preview.stdout)["hasChanges"] is False
    drift = checkout.driver("drift", "dev", "--json", env=env, cwd=colleague)
    assert json.loads(drift.stdout)["drifted"] is False
    history = checkout.driver("history", "dev", "--json", env=env, cwd=colleague)
    updates = json.loads(history.stdout)["updates"]
    assert updates and all(u["kind"] == "update" and u["result"] == "succeeded" for u in updates)

    assert git(colleague, "status", "--porcelain", "--untracked-files=all") == ""
    assert state_files(checkout.state) == before  # nor anything in the backend


def test_the_policy_pack_passes_the_deployed_dev_stack_as_check_does(shipped: Deployed) -> None:
    """Under the engine the stack rules see real outputs (tagsAll, ARNs); they must not fire on them."""
    checkout = shipped.checkout
    check = json.loads(checkout.driver("check", "dev", "--json").stdout)
    assert check["clean"] is True
    preview = checkout.pulumi(
        "preview", "-s", "dev", "--policy-pack", "policy", "--json", env=streaming(checkout.cli_env())
    )
    assert pack_violations(preview.stdout) == set()
    summary = summary_event(preview.stdout)
    assert changes(summary["resourceChanges"]) == {"same": len(checkout.export()["resources"])}


def test_promoting_unchanged_dev_checks_the_endpoints_and_alarms_the_engine_reports(
    shipped: Deployed, endpoint: Endpoint, aws: dict[str, str]
) -> None:
    """`promote --only dev` on a stage already running its release: no up, but health checks through
    the API URL and the TEST distribution the stack outputs name, and one look at its alarms."""
    checkout = shipped.checkout
    outputs = json.loads(checkout.pulumi("stack", "output", "-s", "dev", "--json").stdout)
    cloudwatch = boto("cloudwatch", aws)
    for alarm in checkout.cloud.resources("aws:cloudwatch/metricAlarm:MetricAlarm", stack="dev"):
        cloudwatch.put_metric_alarm(
            AlarmName=alarm.output("name"),
            MetricName=alarm.output("metricName"),
            Namespace=alarm.output("namespace"),
            ComparisonOperator=alarm.output("comparisonOperator"),
            EvaluationPeriods=alarm.output("evaluationPeriods"),
            Period=alarm.output("period"),
            Threshold=float(alarm.output("threshold")),
            Statistic="Sum",
        )
    endpoint.seen.clear()

    promoted = checkout.driver("promote", "--only", "dev", "--yes", "--json", env={**checkout.env, **aws})
    record = json.loads(promoted.stdout)
    assert (record["result"], record["exitCode"]) == ("unchanged", 0)
    [stage] = record["stages"]
    assert stage["result"] == "unchanged" and stage["updates"] == []
    [check] = stage["verification"]
    assert check["phase"] == "check" and check["ok"] is True
    api = outputs["apiUrl"].rstrip("/")
    assert api.startswith(f"{endpoint.url}/api/")
    expected = {f"{api}{path}" for path in outputs["healthPaths"].values()} | {f"{outputs['testDomain']}/"}
    assert {h["url"] for h in check["health"] if h["ok"] and h["status"] == 200} == expected
    assert {endpoint.url + path for path in endpoint.seen} == expected
    assert check["bake"]["alarms"] == outputs["alarmNames"] and check["bake"]["missing"] == []
    assert len(outputs["alarmNames"]) == 7


# --- policy: the pack under the engine reports what `check` reports ------------------------------


def streaming(env: Mapping[str, str]) -> dict[str, str]:
    """`pulumi preview --json` leaves policy results out (pulumi/pulumi#18851); its event stream has them."""
    return {**env, "PULUMI_ENABLE_STREAMING_JSON_PREVIEW": "true"}


def pack_violations(stream: str) -> set[tuple[str, str, str, str]]:
    """(rule, URN, severity, message) of each policy event; the message's last line is the rule's."""
    found = set()
    for document in json_documents(stream):
        event = document.get("policyEvent")
        if event is None:
            continue
        assert event["policyPackName"] == "stageline" and event["enforcementLevel"] == "mandatory"
        last = event["message"].strip().splitlines()[-1]
        name = event["resourceUrn"].rsplit("::", 1)[-1]
        assert last.startswith(f"{name}: "), last
        found.add(
            (event["policyName"], event["resourceUrn"], event["severity"], last.removeprefix(f"{name}: "))
        )
    return found


def check_violations(report: Mapping[str, Any], stack: str) -> set[tuple[str, str, str, str]]:
    [entry] = [s for s in report["stacks"] if s["stack"] == stack]
    return {(v["rule"], v["urn"], v["severity"], v["message"]) for v in entry["violations"]}


def weaken(root: Path) -> None:
    """A pull request that weakens the program (dev and prod) and prod's GitHub protection.

    Dev's stack file alone cannot express a violation: config validation refuses a grant of every action,
    iam:/sts: grants, tags that override project/environment/managed-by, unknown retention values, and dev
    is not a production environment. So the dev side of the weakening is a code change, which is what
    CI's preview with the pack is there to catch; prod's is a stack-file change, as in tests/automation.
    """

    def replace(path: str, old: str, new: str) -> None:
        file = root / path
        text = file.read_text()
        assert text.count(old) == 1, f"{path}: {old!r} not found once"
        file.write_text(text.replace(old, new))

    replace("infra/api.py", "            retention_in_days=args.log_retention_days,\n", "")
    replace("infra/artifacts.py", 'image_tag_mutability="IMMUTABLE"', 'image_tag_mutability="MUTABLE"')
    prod = root / "Pulumi.prod.yaml"
    document = yaml.safe_load(prod.read_text())
    environment = document["config"]["stageline:github"]["environment"]
    del environment["reviewers"], environment["preventSelfReview"]
    environment["canAdminsBypass"] = True
    prod.write_text(yaml.safe_dump(document, sort_keys=False))


def test_the_policy_pack_under_the_engine_reports_what_check_reports(
    tmp_path: Path, pulumi_home: Path
) -> None:
    checkout = make_checkout(tmp_path, pulumi_home)
    weaken(checkout.root)
    check = checkout.driver("check", "dev", "prod", "--json", expect=3)
    report = json.loads(check.stdout)

    seen: dict[str, set[tuple[str, str, str, str]]] = {}
    for stack in ("dev", "prod"):
        checkout.pulumi("stack", "init", stack)
        # Mandatory violations fail the preview (exit 1), as they would fail CI.
        preview = checkout.pulumi(
            "preview",
            "-s",
            stack,
            "--policy-pack",
            "policy",
            "--json",
            expect=1,
            env=streaming(checkout.cli_env()),
        )
        seen[stack] = pack_violations(preview.stdout)
        assert seen[stack] == check_violations(report, stack)
    assert {(rule, urn.rsplit("::", 1)[-1]) for rule, urn, _, _ in seen["dev"]} == {
        ("log-retention", "http-api-access-logs"),
        ("ecr-immutable-tags", "artifacts-repository"),
    }
    assert {(rule, urn.rsplit("::", 1)[-1]) for rule, urn, _, _ in seen["prod"]} == {
        ("log-retention", "http-api-access-logs"),
        ("ecr-immutable-tags", "artifacts-repository"),
        ("prod-reviewers", "github-environment"),
        ("prod-no-admin-bypass", "github-environment"),
        # prod's job would hold the GitHub token with no reviewer to stop it
        ("github-token-reviewed", "stageline-prod"),
    }
    assert len(seen["prod"]) == 6  # prod-reviewers twice: no reviewers, and self-review allowed


# --- secret_dev: dev with a secret in its stack file, deployed with the driver ----------------


@pytest.fixture(scope="module")
def secret_dev(tmp_path_factory: pytest.TempPathFactory, pulumi_home: Path) -> Checkout:
    checkout = make_checkout(tmp_path_factory.mktemp("secret-dev"), pulumi_home)
    checkout.pulumi("stack", "init", "dev")
    checkout.pulumi("config", "set", "--secret", "stageline:slackWebhookUrl", SLACK_URL, "-s", "dev")
    assert SLACK_URL not in (checkout.root / "Pulumi.dev.yaml").read_text()
    up = checkout.driver("up", "dev", "--yes", "--approve-iam", "--json")  # first deployment: IAM roles
    assert json.loads(up.stdout)["update"]["result"] == "succeeded"
    return checkout


def test_a_secret_in_the_stack_file_never_reaches_the_output(secret_dev: Checkout) -> None:
    checkout = secret_dev
    secret = checkout.cloud.find(ENV_SECRET, "github-secret-SLACK_WEBHOOK_URL")
    assert secret is not None and secret.output("value") == SLACK_URL  # it did reach GitHub

    preview = json.loads(checkout.driver("preview", "dev", "--json").stdout)
    assert preview["hasChanges"] is False
    history = json.loads(checkout.driver("history", "dev", "--json").stdout)
    assert history["updates"] and all(u["result"] == "succeeded" for u in history["updates"])
    drift = json.loads(checkout.driver("drift", "dev", "--json").stdout)
    assert drift["drifted"] is False
    exported = checkout.pulumi("stack", "export", "-s", "dev").stdout
    state = json.loads(exported)["deployment"]
    [record] = [r for r in state["resources"] if r["type"] == ENV_SECRET]
    assert set(record["outputs"]["value"]) == {"4dabf18193072939515e22adb298388d", "ciphertext"}

    checkpoint = "".join(p.read_text() for p in checkout.state.rglob("*.json"))
    for text in [*checkout.outputs, exported, checkpoint]:
        assert SLACK_SECRET not in text


# --- drift through the driver --------------------------------------------------------------------


def drifted_properties(report: Mapping[str, Any]) -> dict[str, Any]:
    [stack] = report["stacks"]
    return {
        r["name"]: (r["kind"], [(p["path"], p["old"], p["new"]) for p in r["properties"]])
        for r in stack["resources"]
    }


def test_drift_is_reported_remediated_and_ignored_as_the_readme_says(secret_dev: Checkout) -> None:
    checkout, cloud = secret_dev, secret_dev.cloud
    cloud.set_property("service-api-function", "memorySize", 512)
    cloud.delete("service-worker-logs")
    secret = cloud.find(ENV_SECRET, "github-secret-SLACK_WEBHOOK_URL")
    assert secret is not None
    cloud.set_property(secret.id, "value", "https://hooks.slack.com/services/T0/B0/consolesecret")

    text = checkout.driver("drift", "dev", expect=3).stdout
    assert text.splitlines()[0] == "dev: drifted: 3 resource(s)"
    assert f"  - {LOG_GROUP} service-worker-logs: deleted outside Pulumi" in text
    assert f"  ~ {FUNCTION} service-api-function\n      memorySize: 256 -> 512" in text
    assert f'  ~ {ENV_SECRET} github-secret-SLACK_WEBHOOK_URL\n      value: "[secret]" -> "[secret]"' in text

    # --remediate --json: the same report, then the up that puts the cloud back as the program says.
    remediated = json.loads(checkout.driver("drift", "dev", "--remediate", "--yes", "--json").stdout)
    assert remediated["exitCode"] == 0
    [update] = remediated["remediated"]
    assert update["stack"] == "dev" and update["update"]["result"] == "succeeded"
    # The log group made again; the function, its live alias (Lambda published version 2) and the secret.
    counts = update["update"]["resourceChanges"]
    assert {op: n for op, n in counts.items() if op != "same"} == {"create": 1, "update": 3}
    assert drifted_properties(remediated) == {
        "service-worker-logs": ("delete", []),
        "service-api-function": ("update", [("memorySize", 256, 512)]),
        "github-secret-SLACK_WEBHOOK_URL": ("update", [("value", "[secret]", "[secret]")]),
    }
    function = cloud.find(FUNCTION, "service-api-function")
    logs = cloud.find(LOG_GROUP, "service-worker-logs")
    secret = cloud.find(ENV_SECRET, "github-secret-SLACK_WEBHOOK_URL")
    assert function is not None and function.output("memorySize") == 256
    assert logs is not None and logs.output("retentionInDays") == 7
    assert logs.output("name") == "/aws/lambda/stageline-dev-worker"
    assert secret is not None and secret.output("value") == SLACK_URL

    # The ignore file silences what it names, and only that.
    cloud.set_property("service-api-function", "memorySize", 1024)
    cloud.set_property("service-worker-function", "timeout", 60)
    (checkout.root / "drift-ignore.yaml").write_text("aws:lambda/*:\n  - memorySize\n")
    ignored = json.loads(checkout.driver("drift", "dev", "--json", expect=3).stdout)
    assert drifted_properties(ignored) == {"service-worker-function": ("update", [("timeout", 30, 60)])}
    api_urn = function.urn
    assert ignored["stacks"][0]["ignored"] == [f"{api_urn} memorySize"]
    for text in checkout.outputs:
        assert SLACK_SECRET not in text and "consolesecret" not in text


# --- a stack file that names its secrets provider ----------------------------------------------


@pytest.fixture
def aws() -> Iterator[dict[str, str]]:
    """moto on 127.0.0.1 (KMS, CloudWatch) and the environment that reaches it, for the CLI and boto3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's backends are per process, not per server: start from an empty cloud, whatever an earlier
    # test on this worker created (an ECR repository of the same name would exist already).
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"))
    try:
        yield {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    finally:
        server.stop()


def boto(service: str, env: Mapping[str, str]) -> Any:
    import boto3

    return boto3.client(
        service,
        region_name=env["AWS_REGION"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def test_a_stack_is_created_with_the_secrets_provider_its_stack_file_names(
    tmp_path: Path, pulumi_home: Path, aws: dict[str, str]
) -> None:
    kms = boto("kms", aws)
    key = kms.create_key(Description="stageline dev secrets")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=KMS_ALIAS, TargetKeyId=key)
    checkout = make_checkout(tmp_path, pulumi_home, **aws)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        checkout.env.pop(name, None)
    stack_file = checkout.root / "Pulumi.dev.yaml"
    stack_file.write_text(f"secretsprovider: {KMS_PROVIDER}\n" + stack_file.read_text())
    git(checkout.root, "commit", "-qam", "dev: secrets in KMS")

    up = checkout.driver("up", "dev", "--yes", "--approve-iam", "--json")  # first deployment: IAM roles
    assert json.loads(up.stdout)["update"]["result"] == "succeeded"
    document = yaml.safe_load(stack_file.read_text())
    assert document["secretsprovider"] == KMS_PROVIDER
    assert document.get("encryptedkey") and "encryptionsalt" not in document
    providers = checkout.export()["secrets_providers"]
    assert providers["type"] == "cloud" and providers["state"]["url"] == KMS_PROVIDER

    # A secret set now is encrypted with the KMS data key, and the driver can read the stack back.
    checkout.pulumi("config", "set", "--secret", "stageline:slackWebhookUrl", SLACK_URL, "-s", "dev")
    assert SLACK_SECRET not in stack_file.read_text()
    shown = len(checkout.outputs)
    assert (
        checkout.pulumi("config", "get", "stageline:slackWebhookUrl", "-s", "dev").stdout.strip() == SLACK_URL
    )
    del checkout.outputs[shown:]  # `config get` prints it: that is what it is for
    preview = json.loads(checkout.driver("preview", "dev", "--json").stdout)
    [stack] = preview["stacks"]
    assert [(s["op"], s["name"]) for s in stack["steps"] if s["op"] != "same"] == [
        ("create", "github-secret-SLACK_WEBHOOK_URL")
    ]
    for text in checkout.outputs:
        assert SLACK_SECRET not in text


# --- Pulumi's parser and the stack-file reader agree (issue 11) ---------------------------------------

_DEV = (Path(__file__).resolve().parents[2] / "Pulumi.dev.yaml").read_bytes()
_PARSER_CASES: dict[str, bytes] = {
    "shipped": _DEV,
    "bom": b"\xef\xbb\xbf" + _DEV,
    "merge keys": b"config:\n  x:a: &a {m: 1}\n  x:b:\n    <<: *a\n    n: 2\n",
    "aliases": b"config:\n  x:a: &a [1, 2]\n  x:b: *a\n",
    "no namespace": b"config:\n  logRetentionDays: 7\n",
    "duplicate key": b"config:\n  x:a: 1\n  x:a: 2\n",
    "duplicate nested key": b"config:\n  x:a:\n    memory: 256\n    memory: 512\n",
    "duplicate flow key": b"config:\n  x:a: {m: 1, m: 2}\n",
    "numeric config key": b"config:\n  5: x\n",
    "latin-1": b"config:\n  x:a: caf\xe9\n",
    "latin-1 comment": b"# caf\xe9\nconfig:\n  x:a: 1\n",
    "list key": b"config:\n  x:a:\n    ? [1]\n    : x\n",
    "recursive alias": b"config:\n  x:a: &a [*a]\n",
    "config not a mapping": b"config: 5\n",
}
# Refused by both parsers: Pulumi's YAML library and the stack-file reader.
_BOTH_REFUSE = {
    "duplicate key",
    "duplicate nested key",
    "duplicate flow key",
    "numeric config key",
    "latin-1",
    "latin-1 comment",
    "list key",
    "recursive alias",
    "config not a mapping",
}


def test_the_stack_file_reader_accepts_nothing_pulumis_parser_refuses(tmp_path: Path) -> None:
    """Every case the reader accepts, `pulumi config` reads too; duplicate keys and the other
    structural errors are refused by both. (The reader is stricter on purpose elsewhere: limits,
    UTF-16, language tags.)"""
    from infra.config import ConfigError
    from infra.config.stack_file import read_stack_file

    pulumi = cli()
    assert pulumi is not None
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: stageline\nruntime: python\n")
    env = {
        **environment(tmp_path / "home", tmp_path / "cloud"),
        "PULUMI_BACKEND_URL": (tmp_path / "state").as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": "",
    }
    (tmp_path / "state").mkdir()
    subprocess.run([pulumi, "stack", "init", "dev"], cwd=project, env=env, check=True, capture_output=True)
    disagreements = []
    for name, data in _PARSER_CASES.items():
        (project / "Pulumi.dev.yaml").write_bytes(data)
        try:
            read_stack_file(project, "dev")
            ours = True
        except ConfigError:
            ours = False
        done = subprocess.run(
            [pulumi, "config", "--json", "-s", "dev"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        theirs = done.returncode == 0
        if ours and not theirs:
            disagreements.append(f"{name}: accepted here, refused by Pulumi: {done.stderr.strip()}")
        if name in _BOTH_REFUSE and (ours or theirs):
            disagreements.append(f"{name}: expected both to refuse (ours {ours}, Pulumi {theirs})")
        if name not in _BOTH_REFUSE and not ours:
            disagreements.append(f"{name}: refused here")
    assert disagreements == []
