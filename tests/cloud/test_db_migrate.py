"""Migrations: applied once each, recorded, safe when several processes start at once."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from cloud.db.migrate import apply, migration_files

ALL = [p.name for p in migration_files()]
TABLES = {"schools", "devices", "people", "cards", "events", "quarantine", "schema_migrations"}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_fresh_database_gets_every_migration_once(empty_database_url: str) -> None:
    assert ALL and ALL[0] == "0001_init.sql"
    assert apply(empty_database_url) == ALL
    assert TABLES <= _tables(empty_database_url)
    assert apply(empty_database_url) == []  # idempotent
    with psycopg.connect(empty_database_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == ALL


def test_template_clone_is_up_to_date(database_url: str) -> None:
    assert apply(database_url) == []


def test_concurrent_apply_runs_each_file_once(empty_database_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            barrier.wait()
            results.append(apply(empty_database_url))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(n for r in results for n in r) == ALL


def test_new_file_is_applied_in_name_order(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (id int); INSERT INTO b VALUES (2);")
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id int);")
    assert apply(empty_database_url, tmp_path) == ["0001_a.sql", "0002_b.sql"]
    (tmp_path / "0003_c.sql").write_text("ALTER TABLE b ADD COLUMN c int;")
    assert apply(empty_database_url, tmp_path) == ["0003_c.sql"]


def test_failing_migration_rolls_back_and_is_not_recorded(
    empty_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE x (id int); SELECT 1/0;")
    with pytest.raises(psycopg.errors.DivisionByZero):
        apply(empty_database_url, tmp_path)
    assert "x" not in _tables(empty_database_url)
    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE x (id int);")
    assert apply(empty_database_url, tmp_path) == ["0001_bad.sql"]
