"""Fixtures of the example app's tests."""

from __future__ import annotations

from types import ModuleType

import pytest
from app_testkit import load_handler


@pytest.fixture
def api() -> ModuleType:
    return load_handler("api")


@pytest.fixture
def worker() -> ModuleType:
    return load_handler("worker")
