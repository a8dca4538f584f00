"""`python -m automation build`: package every service, build the frontend, upload, record the release.

1. The first stage: the pipeline's stage with no promotion source (or `--stack`).
2. Each service is a reproducible zip package of its `source` folder, unless `--image SERVICE=sha256:…`
   names an image built elsewhere; a service with no source folder keeps the image its release has.
3. The frontend folder becomes a frontend release named by its manifest's sha256.
4. Uploads to the first stage's artifact and frontend buckets skip what is there; images are checked
   (present, scan below the threshold) and tagged as release images.
5. The release — version (the commit), packages, images, frontend — goes into Pulumi.<first>.yaml, or is
   printed with `--json`. When every artifact is the one the stack file already names, the release in
   the file is kept as it is (same version too): nothing changed, so promotion has nothing to do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automation.aws import aws_client, parse_registry
from automation.build.package import Package, build_package
from automation.build.publish import ImageCheck, Upload, check_image, upload_package, upload_site
from automation.build.record import write_release
from automation.build.site import Site, build_site
from automation.engine.protocol import Engine
from automation.errors import ConfigurationError, StagelineError
from automation.gitinfo import head_commit
from infra import outputs as out
from infra.config import (
    DIGEST_RE,
    SERVICE_NAME_RE,
    VERSION_RE,
    ConfigError,
    parse_stack_file,
    read_stack_file,
)

CACHE_DIR = Path(".stageline") / "build-cache"
VERSION_LENGTH = 12  # characters of the commit SHA a release version takes
_TAG_LIKE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def parse_image(argument: str) -> tuple[str, str]:
    """`SERVICE=sha256:<64 hex>` → (service, digest); a one-line ConfigurationError for anything else."""
    service, sep, digest = argument.partition("=")
    if not sep or not SERVICE_NAME_RE.match(service):
        raise ConfigurationError(f"--image {argument}: give SERVICE=sha256:<64 hex digits>")
    if DIGEST_RE.match(digest):
        return service, digest
    if digest.startswith("sha256:"):
        raise ConfigurationError(f"--image {argument}: a digest is sha256: and 64 lower-case hex digits")
    if _TAG_LIKE_RE.match(digest.rsplit(":", 1)[-1]):
        raise ConfigurationError(
            f"--image {argument}: that is a tag, and a tag can be moved; give the image's digest "
            "(sha256:…, as `docker push` prints it)"
        )
    raise ConfigurationError(f"--image {argument}: give SERVICE=sha256:<64 hex digits>")


@dataclass(frozen=True)
class BuildOptions:
    stack: str | None = None  # default: the pipeline's first stage
    images: Mapping[str, str] = field(default_factory=dict)  # service -> digest, from --image
    version: str | None = None  # default: the commit
    record: bool = True  # False (--json): print the release, leave the stack file alone


@dataclass
class BuildResult:
    stack: str
    release: dict[str, Any]
    previous: dict[str, Any] | None
    unchanged: bool
    packages: list[Package]
    site: Site
    uploads: list[Upload]
    images: list[ImageCheck]
    recorded: Path | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "release": self.release,
            "unchanged": self.unchanged,
            "recorded": self.recorded.name if self.recorded else None,
            "packages": {
                p.service: {"digest": p.digest, "bytes": len(p.data), "files": p.files} for p in self.packages
            },
            "frontend": {"release": self.site.release, "files": [f.to_json() for f in self.site.files]},
            "uploads": [u.to_json() for u in self.uploads],
            "images": [i.to_json() for i in self.images],
            "seconds": round(self.seconds, 3),
        }


def first_stage(root: Path, project: str) -> str:
    from automation.promote.pipeline import resolve

    return resolve(root, project).stages[0].stack


def _version(root: Path, given: str | None) -> str:
    if given is not None:
        if not VERSION_RE.match(given):
            raise ConfigurationError(f"--version {given!r}: letters, digits, . _ - (up to 64)")
        return given
    sha = head_commit(root)
    if sha is None:
        raise ConfigurationError("not a git checkout: pass --version to name the release")
    return sha[:VERSION_LENGTH]


def same_artifacts(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    if not a:
        return False
    return all(dict(a.get(k) or {}) == dict(b.get(k) or {}) for k in ("images", "packages")) and a.get(
        "frontend"
    ) == b.get("frontend")


def build(
    root: Path,
    engine_factory: Callable[[], Engine],
    opts: BuildOptions,
    progress: Callable[[str], None],
    *,
    project: str = "stageline",
) -> BuildResult:
    started = time.monotonic()
    stack = opts.stack or first_stage(root, project)
    try:
        cfg = parse_stack_file(read_stack_file(root, stack), project=project)
    except ConfigError as exc:
        raise ConfigurationError(f"Pulumi.{stack}.yaml: {exc}") from None
    names = [s.name for s in cfg.services]
    for service in opts.images:
        if service not in names:
            raise ConfigurationError(
                f"--image {service}=…: no service {service!r} in Pulumi.{stack}.yaml "
                f"(services: {', '.join(names)})"
            )
    version = _version(root, opts.version)
    current = read_stack_file(root, stack).values.get("release")
    current = dict(current) if isinstance(current, Mapping) else None

    packages: list[Package] = []
    images: dict[str, str] = {}
    for index, svc in enumerate(cfg.services):
        if svc.name in opts.images:
            images[svc.name] = opts.images[svc.name]
            continue
        source = root / svc.source
        what = f"service {svc.name!r} (stageline:services[{index}].source {svc.source})"
        if not source.is_dir() and svc.name in cfg.release.images:
            images[svc.name] = cfg.release.images[svc.name]  # built elsewhere; this build does not change it
            progress(f"{svc.name}: no {svc.source}; keeps image {images[svc.name][:19]}…")
            continue
        if not source.is_dir():
            raise ConfigurationError(
                f"{what}: the folder does not exist; create it or pass --image {svc.name}=sha256:…"
            )
        package = build_package(svc.name, source, runtime=svc.runtime, cache=root / CACHE_DIR, what=what)
        packages.append(package)
        progress(
            f"{svc.name}: package {package.digest[:19]}… ({len(package.data)} bytes, {package.files} files)"
        )
    site = build_site(root / cfg.frontend.source, what=f"stageline:frontend.source {cfg.frontend.source}")
    progress(f"frontend: release {site.release[:12]}… ({len(site.files)} files)")

    outputs = engine_factory().outputs(stack).values
    region = outputs.get(out.REGION) if isinstance(outputs.get(out.REGION), str) else cfg.region

    def located(name: str) -> str:
        value = outputs.get(name)
        if not isinstance(value, str) or not value:
            raise StagelineError(
                f"{stack} exports no {name}: deploy the stack first (python -m automation up {stack})"
            )
        return value

    uploads: list[Upload] = []
    if packages:
        s3 = aws_client("s3", region)
        bucket = located(out.ARTIFACT_BUCKET)
        uploads += [upload_package(s3, bucket, p) for p in packages]
    uploads.append(upload_site(aws_client("s3", region), located(out.FRONTEND_BUCKET), site))
    checks: list[ImageCheck] = []
    if opts.images:
        registry = parse_registry(located(out.ECR_REPOSITORY_URL))
        ecr = aws_client("ecr", registry.region)
        for service, digest in sorted(opts.images.items()):
            checks.append(
                check_image(
                    ecr, registry, service, digest, version=version, threshold=cfg.artifacts.scan_severity
                )
            )
            progress(f"{service}: image {digest[:19]}… is in {registry.url}; its scan passes")
    for upload in uploads:
        progress(f"{upload.what}: {upload.uploaded} uploaded, {upload.present} already there")

    release: dict[str, Any] = {"version": version}
    if images:
        release["images"] = dict(sorted(images.items()))
    if packages:
        release["packages"] = {p.service: p.digest for p in sorted(packages, key=lambda p: p.service)}
    release["frontend"] = site.release
    unchanged = same_artifacts(current, release)
    if unchanged and current is not None:
        release = current
    result = BuildResult(
        stack=stack,
        release=release,
        previous=current,
        unchanged=unchanged,
        packages=packages,
        site=site,
        uploads=uploads,
        images=checks,
    )
    if opts.record and not unchanged:
        result.recorded = write_release(root, stack, release)
    result.seconds = time.monotonic() - started
    return result
