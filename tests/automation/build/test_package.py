"""Reproducible packages and frontend releases: the same inputs give the same bytes and names."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from build_testkit import ROOT

from automation.build.package import FIXED_TIME, build_package, pip_arguments, requirement_lines
from automation.build.site import IMMUTABLE, REVALIDATE, build_site, cache_control, content_type
from automation.errors import ConfigurationError

API = ROOT / "app" / "services" / "api"


def _wheel(where: Path, name: str = "tinydep", version: str = "1.0") -> Path:
    """A pure-Python wheel, so pip can install a pinned requirement with no index."""
    path = where / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as whl:
        for n, data in files.items():
            whl.writestr(n, data)
        whl.writestr(f"{info}/RECORD", record)
    return path


def test_two_builds_of_the_same_sources_are_byte_identical(tmp_path: Path) -> None:
    first = build_package("api", API, runtime="python3.12", cache=tmp_path / "cache")
    # Another checkout: other timestamps, other permissions, a stray compiled file.
    copy = tmp_path / "copy"
    shutil.copytree(API, copy)
    os.utime(copy / "handler.py", (1_700_000_000, 1_700_000_000))
    (copy / "handler.py").chmod(0o755)
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "handler.cpython-312.pyc").write_bytes(b"junk")
    second = build_package("api", copy, runtime="python3.12", cache=tmp_path / "cache")
    assert first.data == second.data
    assert first.digest == second.digest == "sha256:" + hashlib.sha256(first.data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(first.data)) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == ["handler.py"]  # requirements.txt is not shipped
    assert {(i.date_time, i.external_attr >> 16) for i in infos} == {(FIXED_TIME, 0o100644)}


def test_a_changed_source_changes_the_hash(tmp_path: Path) -> None:
    copy = tmp_path / "api"
    shutil.copytree(API, copy)
    before = build_package("api", copy, runtime="python3.12", cache=tmp_path / "c").digest
    (copy / "handler.py").write_text((copy / "handler.py").read_text() + "\n# changed\n")
    assert build_package("api", copy, runtime="python3.12", cache=tmp_path / "c").digest != before


def test_pinned_requirements_are_installed_into_the_package_reproducibly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    service = tmp_path / "svc"
    service.mkdir()
    (service / "handler.py").write_text("import tinydep\n\ndef handler(e, c):\n    return tinydep.VALUE\n")
    (service / "requirements.txt").write_text("# pinned\ntinydep==1.0\n")
    first = build_package("svc", service, runtime="python3.12", cache=tmp_path / "cache-a")
    second = build_package("svc", service, runtime="python3.12", cache=tmp_path / "cache-b")  # pip runs again
    assert first.data == second.data and first.requirements == 1
    with zipfile.ZipFile(io.BytesIO(first.data)) as archive:
        names = archive.namelist()
    assert names == sorted(names)
    assert "tinydep/__init__.py" in names and "handler.py" in names
    assert "tinydep-1.0.dist-info/METADATA" in names
    assert not [n for n in names if n.endswith("/RECORD") or n.endswith(".pyc") or n.startswith("bin/")]


def test_pip_gets_lambdas_platform_and_wheels_only() -> None:
    args = pip_arguments("python3.12")
    assert "--only-binary=:all:" in args and "--no-compile" in args
    assert args[args.index("--platform") + 1] == "manylinux2014_x86_64"
    assert (args[args.index("--python-version") + 1], args[args.index("--abi") + 1]) == ("3.12", "cp312")


def test_bad_requirements_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no requirements.txt in .*an empty file says"):
        requirement_lines(tmp_path / "requirements.txt", what="service 'api'")
    (tmp_path / "requirements.txt").write_text("requests>=2\n")
    with pytest.raises(ConfigurationError, match=r"line 1 must pin one version \(name==version\)"):
        requirement_lines(tmp_path / "requirements.txt", what="service 'api'")
    (tmp_path / "requirements.txt").write_text("requests==2.32.3 --hash=sha256:abc  # pinned\n\n# c\n")
    assert requirement_lines(tmp_path / "requirements.txt", what="x") == [
        "requests==2.32.3 --hash=sha256:abc"
    ]


def test_the_frontend_release_types_and_caches_every_file(tmp_path: Path) -> None:
    site = build_site(ROOT / "app" / "frontend")
    by_path = {f.path: f for f in site.files}
    index = by_path["index.html"]
    assert (index.content_type, index.cache_control) == ("text/html; charset=utf-8", REVALIDATE)
    assets = [f for f in site.files if f.path.startswith("assets/")]
    assert {f.cache_control for f in assets} == {IMMUTABLE} == {"public, max-age=31536000, immutable"}
    assert {f.content_type for f in assets} == {"text/javascript; charset=utf-8", "text/css; charset=utf-8"}
    assert site.upload_order()[-1].path == "index.html"
    # The name is the manifest's hash: the same files give the same name, another byte another one.
    copy = tmp_path / "frontend"
    shutil.copytree(ROOT / "app" / "frontend", copy)
    assert build_site(copy).release == site.release
    (copy / "index.html").write_text((copy / "index.html").read_text() + "<!-- x -->\n")
    assert build_site(copy).release != site.release


@pytest.mark.parametrize(
    ("name", "kind", "cache"),
    [
        ("favicon.ico", "image/vnd.microsoft.icon", REVALIDATE),
        ("logo.4f2a9c1e.svg", "image/svg+xml", IMMUTABLE),
        ("fonts/inter.0123abcd.woff2", "font/woff2", IMMUTABLE),
        ("data/report.pdf", "application/pdf", REVALIDATE),
        ("backup.tar.gz", "application/octet-stream", REVALIDATE),
        ("app.js", "text/javascript; charset=utf-8", REVALIDATE),  # no hash in the name: revalidated
    ],
)
def test_content_type_and_cache_control(name: str, kind: str, cache: str) -> None:
    assert (content_type(name), cache_control(name)) == (kind, cache)


def test_recording_replaces_only_the_release_block() -> None:
    from automation.build.record import replace_release

    text = (
        "config:\n"
        "  # the release\n"
        "  stageline:release:\n"
        "    version: old\n"
        "    images:\n"
        "      api: sha256:aa\n"
        "    # a note after the values stays\n"
        "  stageline:services:\n"
        "    - name: api\n"
    )
    new = replace_release(text, {"version": "v2", "packages": {"api": "sha256:" + "b" * 64}})
    assert new == (
        "config:\n"
        "  # the release\n"
        "  stageline:release:\n"
        "    version: v2\n"
        "    packages:\n"
        f"      api: sha256:{'b' * 64}\n"
        "    # a note after the values stays\n"
        "  stageline:services:\n"
        "    - name: api\n"
    )
