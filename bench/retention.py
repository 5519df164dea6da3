"""retention: what archiving and dropping one month of events costs (D29-B), and restoring it.

One throwaway database: 1,000,000 taps of one month (March 2021, 4 devices, generated
server-side into its partition, then vacuumed). Each run: the archive step (binary COPY into a
file, fsync, read back and parsed: SHA-256, rows, every record's fields), the drop step (the file
checked again, the partition copied once more into the hash under a SHARE lock, detached,
dropped) and the restore (file checked, COPY FROM, count, attach). Baseline: the binary COPY of
the partition to the client alone, with nothing written or checked (the floor of any archive).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import Row, database, median
from cloud.retention import archive, months, pgcopy
from cloud.retention.restore import restore

EVENTS = 1_000_000
MONTH = months.parse("2021-03")


def _populate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT ensure_event_partitions('2021-03-01Z', '2021-03-01Z')")
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at)"
            " SELECT 'bench-' || (i %% 4), 1, i, 'b1', NULL, lpad(to_hex(i %% 1000), 16, '0'),"
            " 'tap', CASE WHEN i %% 2 = 0 THEN 'in' ELSE 'out' END, 'granted', 'ok', t, true,"
            " i * 1000, t FROM (SELECT i, timestamptz '2021-03-01Z' + i * interval '2 seconds'"
            " AS t FROM generate_series(1, %s) i) s",
            (EVENTS,),
        )
        conn.execute("VACUUM ANALYZE events_p202103")


def _copy_only(url: str) -> float:
    columns = None
    with psycopg.connect(url) as conn:
        columns = archive.event_columns(conn)
        t = time.perf_counter()
        with conn.cursor() as cur, cur.copy(archive._copy_out("events_p202103", columns)) as cp:
            for _ in cp:
                pass
        return time.perf_counter() - t


def run(repeat: int = 3) -> list[Row]:
    copy_s: list[float] = []
    archive_s: list[float] = []
    check_s: list[float] = []
    drop_s: list[float] = []
    restore_s: list[float] = []
    size = 0
    with database(4) as url, tempfile.TemporaryDirectory(prefix="qadam-bench-ret-") as d:
        _populate(url)
        directory = Path(d)
        for _ in range(repeat):
            copy_s.append(_copy_only(url))
            with psycopg.connect(url, autocommit=True) as conn:
                t = time.perf_counter()
                a = archive.archive(conn, MONTH, directory, 60)
                archive_s.append(time.perf_counter() - t)
                assert a.rows == EVENTS
                size = a.size
                t = time.perf_counter()
                pgcopy.read_back(a.path, len(archive.event_columns(conn)))
                check_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                assert archive.drop(conn, MONTH, directory, 60) == EVENTS
                drop_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                assert restore(conn, MONTH, directory, 30, 60) == EVENTS
                restore_s.append(time.perf_counter() - t)
    per_s = [EVENTS / median(copy_s)]
    return [
        Row("archive step (copy, write, fsync, read back)", EVENTS / median(archive_s), "rows/s",
            baseline=per_s[0], goal="a month of a region (~60M rows) within an hour"),
        Row("read back and parse the file alone", EVENTS / median(check_s), "rows/s"),
        Row("drop step (file checked, rehash under SHARE lock, detach, drop)",
            EVENTS / median(drop_s), "rows/s"),
        Row("restore (file checked, COPY FROM, count, attach)", EVENTS / median(restore_s),
            "rows/s"),
        Row("archive file size per event", size / EVENTS, "bytes"),
        Row("binary COPY to the client alone (baseline)", per_s[0], "rows/s"),
    ]  # fmt: skip
