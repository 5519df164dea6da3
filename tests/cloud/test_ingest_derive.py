"""The ingest computes two things PostgreSQL used to compute per event (D21): the local day of
an event in its school's time zone, and the corrected time of an unsynced event. Both must be
exactly what PostgreSQL gives, for every zone and instant, so they are compared with it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from cloud.ingest.clock import clock_corrected_us
from cloud.ingest.decode import T_MAX
from cloud.ingest.derive import LocalDays, seq_runs

# Zones whose rules are awkward for a local day: a fall-back at midnight (America/Asuncion,
# 2023-03-26 00:00 -03 -> 2023-03-25 23:00 -04), 30-minute DST (Australia/Lord_Howe), +05:45
# (Asia/Kathmandu), -03:30 with DST (America/St_Johns), a -00:44:30 offset until 1972
# (Africa/Monrovia), a day skipped over the date line (Pacific/Apia, 2011-12-30), negative DST
# (Europe/Dublin), a POSIX-style zone PostgreSQL accepts ('UTC+5'), and the default.
ZONES = [
    "Asia/Almaty", "America/Asuncion", "Australia/Lord_Howe", "Asia/Kathmandu",
    "America/St_Johns", "Africa/Monrovia", "Pacific/Apia", "Europe/Dublin", "UTC+5", "UTC",
]  # fmt: skip

# Instants around which offsets change in some of the zones above (Unix seconds).
AROUND = [
    1_679_799_600,  # Asuncion falls back at local midnight
    63_593_070,  # 1972-01-07 Monrovia leaves -00:44:30
    1_325_239_200,  # 2011-12-30 Apia skips a day
    1_711_846_800,  # 2024-03-31 Europe's spring change
    1_696_089_600,  # 2023-10-01 Lord Howe's half-hour change
]


@pytest.fixture
def conn(database_url: str) -> Iterator[Any]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _instants(rng: random.Random) -> list[int]:
    ts = {0, 1, T_MAX, T_MAX - 1}
    for center in AROUND:
        # every 7 minutes for two days around it, and every second for ten minutes either side
        ts.update(range(center - 86_400, center + 86_400, 420))
        ts.update(range(center - 600, center + 600))
    ts.update(rng.randrange(0, T_MAX + 1) for _ in range(2_000))
    ts.update(rng.randrange(1_600_000_000, 1_900_000_000) for _ in range(2_000))
    return sorted(ts)


def test_local_days_are_postgresqls(conn: Any) -> None:
    ts = _instants(random.Random(7))
    days = LocalDays()
    with conn.cursor() as cur:
        days.resolve(cur, {zone: set(ts) for zone in ZONES})
        want = {
            (zone, int(t)): int(d)
            for zone, t, d in cur.execute(
                "SELECT z, t, (to_timestamp(t) AT TIME ZONE z)::date - date '1970-01-01'"
                " FROM unnest(%s::text[]) z, unnest(%s::int8[]) t",
                (ZONES, ts),
            )
        }
    assert len(want) == len(ZONES) * len(ts)
    wrong = [(z, t, days.day(z, t), d) for (z, t), d in want.items() if days.day(z, t) != d]
    assert wrong == []
    # hours in which an offset changes (at half past: Lord Howe; at 00:44:30 UTC: Monrovia)
    # were asked instant by instant
    assert None in days.offsets("Australia/Lord_Howe").values()
    assert None in days.offsets("Africa/Monrovia").values()
    assert None not in days.offsets("UTC").values()


def test_local_days_cache_and_its_bound(conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    days = LocalDays()
    monkeypatch.setattr(LocalDays, "MAX_HOURS", 10)
    base = 1_700_000_000
    with conn.cursor() as cur:
        days.resolve(cur, {"Asia/Almaty": {base + 3600 * i for i in range(30)}})
        first = [days.day("Asia/Almaty", base + 3600 * i) for i in range(30)]
        # past the bound, the cache starts again and still answers the same
        days.resolve(cur, {"Asia/Almaty": {base + 3600 * i for i in range(30)}})
        assert [days.day("Asia/Almaty", base + 3600 * i) for i in range(30)] == first
        assert len(days.offsets("Asia/Almaty")) == 30
    assert first[0] + 1 == first[-1]  # 30 hours span two local days here


def test_clock_correction_is_the_sql_functions(conn: Any) -> None:
    rng = random.Random(11)
    cases = [(1_760_000_000, 7_200_000, 0), (1_760_000_000, 0, 7_200_000), (0, 5, 4)]
    for _ in range(20_000):
        t_ref = rng.choice([rng.randrange(0, 2**31), rng.randrange(1_600_000_000, 1_800_000_000),
                            rng.randrange(2**31, 250_000_000_000)])  # fmt: skip
        up_ref = rng.randrange(0, 2**40)
        up = rng.choice([rng.randrange(0, up_ref + 1), up_ref - rng.randrange(0, 10**7),
                         up_ref + rng.randrange(0, 10**7)])  # fmt: skip
        cases.append((t_ref, up_ref, max(up, 0)))
    rows = conn.execute(
        "SELECT t_ref, up_ref, up, clock_corrected(t_ref, up_ref, up)"
        " FROM unnest(%s::int8[], %s::int8[], %s::int8[]) AS c(t_ref, up_ref, up)",
        ([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases]),
    ).fetchall()
    assert len(rows) == len(cases)
    pg_epoch, us = datetime(2000, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
    wrong = [r for r in rows if clock_corrected_us(r[0], r[1], r[2]) != (r[3] - pg_epoch) // us]
    assert wrong == []


def test_seq_runs_name_exactly_the_seqs_as_the_fewest_ranges() -> None:
    assert seq_runs([]) == []
    assert seq_runs([1, 2, 3, 7]) == [[1, 3], [7, 7]]
    rng = random.Random(22)
    for _ in range(2_000):
        seqs = sorted(rng.sample(range(1, 300), rng.randint(1, 256)))
        runs = seq_runs(seqs)
        assert [s for lo, hi in runs for s in range(lo, hi + 1)] == seqs
        assert all(a[1] + 1 < b[0] for a, b in zip(runs, runs[1:], strict=False))  # none touch
