"""The example frontend: content-hashed assets whose names match their bytes, referenced by index.html."""

from __future__ import annotations

import hashlib
import re

from app_testkit import APP

FRONTEND = APP / "frontend"


def test_every_asset_name_carries_its_content_hash() -> None:
    assets = sorted((FRONTEND / "assets").iterdir())
    assert assets
    for asset in assets:
        match = re.fullmatch(r"[a-z]+\.([0-9a-f]{8})\.(js|css)", asset.name)
        assert match, asset.name
        assert hashlib.sha256(asset.read_bytes()).hexdigest()[:8] == match.group(1), asset.name


def test_index_references_exactly_the_assets() -> None:
    html = (FRONTEND / "index.html").read_text(encoding="utf-8")
    referenced = set(re.findall(r'(?:href|src)="/(assets/[^"]+)"', html))
    assert referenced == {f"assets/{p.name}" for p in (FRONTEND / "assets").iterdir()}
    assert "<script>" not in html  # the CSP allows scripts from files only
