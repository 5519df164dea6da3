"""import_accounts: a 10,000-pupil CSV import applied with the ``student_account`` column set to
"yes" for every row (D29-E: an app account per pupil, set-based), against the same file without
the column. Each run is applied and rolled back in one throwaway database, so every run starts
from the same school; the plan and the apply are timed together, as the console's "Apply" runs
them (cloud/imports/run.py).
"""

from __future__ import annotations

import time
from datetime import date

import psycopg

from bench.common import Row, database, median
from cloud.auth.principal import Principal
from cloud.imports import iin
from cloud.imports.run import run_import

PUPILS = 10_000


def pupils_file(accounts: bool) -> bytes:
    lines = ["ФИО;Класс;ИИН" + (";Аккаунт ученика" if accounts else "")]
    for i in range(PUPILS):  # unique IINs: the birth date and the serial vary with i
        pupil = iin.make(date(2010 + i % 5, i % 12 + 1, i % 28 + 1), i // 60 * 11)
        lines.append(f"Pupil {i};{i % 40 + 1}A;{pupil}" + (";да" if accounts else ""))
    return ("\r\n".join(lines) + "\r\n").encode()


def admin(url: str) -> Principal:
    """The importing user (the audit row names them)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role) VALUES"
            " ('bench@qadam.kz', '!bench', 'platform_admin') RETURNING id"
        ).fetchone()
    assert row is not None
    return Principal(user_id=int(row[0]), email="bench@qadam.kz", role="platform_admin")


def applied_s(url: str, who: Principal, data: bytes) -> float:
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        run = run_import(conn, who, "b1", "students", data, "bench.csv", dry_run=False)
        took = time.perf_counter() - t0
        assert run.applied and not run.plan.errors, run.plan.errors[:3]
        assert run.plan.would_create()["people"] == PUPILS
        conn.rollback()  # the next run starts from the same school
    return took


def run(repeat: int = 3) -> list[Row]:
    with_column, without = pupils_file(True), pupils_file(False)
    ours: list[float] = []
    base: list[float] = []
    with database(0) as url:
        who = admin(url)
        for _ in range(repeat):  # interleaved, so a busy moment hurts both alike
            base.append(applied_s(url, who, without))
            ours.append(applied_s(url, who, with_column))
    extra = max(median(ours) - median(base), 1e-9)
    return [
        Row(f"{PUPILS:,} pupils imported, each with an app account", median(ours), "s",
            baseline=median(base)),
        Row("app accounts made a second (the difference)", PUPILS / extra, "accounts/s"),
    ]  # fmt: skip
