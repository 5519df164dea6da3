"""Fixtures of the store failover test (D29-D): a pg_auto_failover formation we start
ourselves, and the cloud tests' helpers (tests/cloud: the fake board) on the import path."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cloud"))

from pgaf_formation import Formation  # noqa: E402


@pytest.fixture
def formation() -> Iterator[Formation]:
    """A fresh monitor + primary + streaming standby for one test (it kills a node)."""
    # Outside pytest's per-user base dir, which the postgres user cannot enter.
    work = Path(tempfile.mkdtemp(prefix="qadam-pgaf-"))
    f = Formation(work)
    try:
        yield f.start()
    finally:
        f.stop()
        f.remove()
