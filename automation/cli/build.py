"""The `build` command: glue between click and automation.build.run."""

from __future__ import annotations

import click

from automation.cli.options import STACK, json_option


@click.command(
    epilog="""\b
Examples:
  python -m automation build
  python -m automation build --json
  python -m automation build --image api=sha256:3f1c…  (an image a Docker build pushed)"""
)
@click.option(
    "--stack",
    type=STACK,
    default=None,
    help="The stack to build for [default: the first stage of the promotion pipeline].",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="SERVICE=sha256:…",
    help="Record an image built elsewhere for SERVICE instead of packaging it; it must be in the "
    "stack's registry and pass its scan. Repeatable.",
)
@click.option(
    "--version",
    "version",
    default=None,
    help="The release version [default: the commit's SHA, 12 characters].",
)
@json_option
def build(*, stack: str | None, images: tuple[str, ...], version: str | None, as_json: bool) -> None:
    """Package the application, upload it to the first stage and record the release.

    Every service becomes a reproducible zip package (same sources, same bytes, same sha256), the
    frontend a release named by its content; both go to the stack's buckets, skipping what is already
    there. The release is written into Pulumi.<stack>.yaml, or printed with --json (the file is left
    alone). Needs AWS credentials for the stack's account and its outputs (it must be deployed)."""
    from pathlib import Path

    from automation import output
    from automation.build.run import BuildOptions, parse_image
    from automation.build.run import build as run_build
    from automation.engine.project import find_project_root, project_name
    from automation.engine.protocol import open_engine
    from automation.errors import ConfigurationError

    parsed: dict[str, str] = {}
    for argument in images:
        service, digest = parse_image(argument)
        if service in parsed:
            raise ConfigurationError(f"--image {argument}: {service} is given twice")
        parsed[service] = digest
    where = find_project_root(Path.cwd())
    result = run_build(
        where,
        open_engine,
        BuildOptions(stack=stack, images=parsed, version=version, record=not as_json),
        output.progress,
        project=project_name(where),
    )
    if as_json:
        output.emit_json(result.to_json())
        return
    version_line = result.release["version"]
    if result.unchanged:
        line = f"{result.stack}: nothing changed; Pulumi.{result.stack}.yaml keeps release {version_line}"
    else:
        line = f"{result.stack}: release {version_line} recorded in Pulumi.{result.stack}.yaml"
    click.echo(line)
    output.step_summary(f"### build {result.stack}\n\n{line}")
