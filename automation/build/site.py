"""A frontend release: every file of the frontend folder with its Content-Type and Cache-Control.

The release is named by the sha256 of its manifest (each file's path, sha256, type and caching), so an
unchanged frontend keeps its name and its `releases/<name>/` prefix, and promotion leaves it alone.

Caching: a file whose name carries a content hash (`app.3f9c2a1b.js`: a dot, 8 or more hex digits, a
dot, the extension) can never change under its name, so it is cached for a year and marked
`immutable`; everything else (`index.html` first of all) is `no-cache`: browsers and CloudFront
revalidate it on every request, so a switch of release is seen at once.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automation.errors import ConfigurationError

HASHED_NAME_RE = re.compile(r"\.[0-9a-f]{8,}\.[A-Za-z0-9]+$")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Where the platform's mime table is wrong or missing for the web (it varies between machines: the
# standard library reads /etc/mime.types), or a charset should be said.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/vnd.microsoft.icon",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".wasm": "application/wasm",
    ".xml": "application/xml",
}
DEFAULT_TYPE = "application/octet-stream"
ENTRY_POINT = "index.html"


def content_type(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed is None or encoding is not None:  # "x.tar.gz" is gzip-encoded, not a tarball to render
        return DEFAULT_TYPE
    return guessed


def cache_control(name: str) -> str:
    return IMMUTABLE if HASHED_NAME_RE.search(name) else REVALIDATE


@dataclass(frozen=True)
class SiteFile:
    path: str  # relative, "/"-separated
    source: Path
    sha256: str
    size: int
    content_type: str
    cache_control: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "contentType": self.content_type,
            "cacheControl": self.cache_control,
        }


@dataclass(frozen=True)
class Site:
    files: tuple[SiteFile, ...]  # sorted by path; the entry point last (see `upload_order`)

    @property
    def release(self) -> str:
        """The release's name: the sha256 of its manifest (64 hex digits)."""
        manifest = json.dumps([f.to_json() for f in self.files], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(manifest.encode()).hexdigest()

    def upload_order(self) -> list[SiteFile]:
        """Assets first, `index.html` last: a half-uploaded release never has its entry point."""
        return sorted(self.files, key=lambda f: (f.path == ENTRY_POINT, f.path))


def build_site(folder: Path, *, what: str = "stageline:frontend.source") -> Site:
    if not folder.is_dir():
        raise ConfigurationError(f"{what}: frontend folder {folder} does not exist")
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            data = path.read_bytes()
            files.append(
                SiteFile(
                    path=rel,
                    source=path,
                    sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data),
                    content_type=content_type(rel),
                    cache_control=cache_control(rel),
                )
            )
    if not any(f.path == ENTRY_POINT for f in files):
        raise ConfigurationError(f"{what}: frontend folder {folder} has no {ENTRY_POINT}")
    return Site(files=tuple(sorted(files, key=lambda f: f.path)))
