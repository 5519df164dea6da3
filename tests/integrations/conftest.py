"""The integrations' tests (issue #17 part 2, D29-I): the API tests' populated world
(tests/cloud/api_world.py) and its helpers, importable from here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cloud"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "console"))

import pytest  # noqa: E402
from api_world import World  # noqa: E402
from fake_socialwallet import canteen_world  # noqa: E402


@pytest.fixture
def world(database_url: str) -> World:
    """api_world's schools, users and people, canteen boards cant-1 (s1) and cant-3 (s3)."""
    return canteen_world(database_url)
