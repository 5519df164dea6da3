"""The benchmark harness stays runnable: every listed benchmark imports and has ``run``, and the
ingest benchmarks' database-side parts work against the current schema at a small size (a staging
column added to the ingest once broke the COPY baseline unnoticed)."""

from __future__ import annotations

import importlib

import pytest

import bench.ingest_live as live
from bench.__main__ import main
from bench.common import BENCHMARKS, database


def test_every_benchmark_is_listed_and_runnable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    listed = capsys.readouterr().out
    for name, (module, _) in BENCHMARKS.items():
        assert name in listed
        assert callable(importlib.import_module(module).run), name
    assert main(["no_such_bench"]) == 2


def test_ingest_database_baselines_run_on_the_current_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "COPY_ROWS", 2_000)
    monkeypatch.setattr(live, "WRITE_BATCHES", 40)
    with database(live.DEVICES) as url:
        assert live.copy_rate(url) > 0
        assert live.writer_rate(url, boot=1) > 0
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT person_id), count(*) FILTER"
                " (WHERE person_id IS NULL) FROM events"
            ).fetchone()
    # every tap is a pupil of the bench school's roster, spread over many of them
    assert row is not None and row[0] == 40 * 32 and row[2] == 0 and row[1] >= 32
