"""Parent notices (issue #13 item 9): the corrected time, with the date, in the school's zone and
the guardian's language; a backlog older than push_max_age_s is one summary per child, not a
storm of "arrived" messages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from cloud_helpers import CARD_A, Seed, batch_doc, dumps, topic

from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write
from cloud.push.handlers import ParentNotificationHandler
from cloud.push.message import PushMessage, RecordingPushService
from cloud.push.service import _recipients_and_fields
from cloud.push.texts import render
from cloud.settings import Settings
from cloud.workers.outbox import OutboxWorker, build_handlers


@pytest.fixture
def conn(database_url: str, seed: Seed) -> Iterator[Any]:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("UPDATE schools SET timezone = 'Asia/Tokyo' WHERE id = 's1'")  # UTC+9
        yield c


def _write(conn: Any, seqs: range | list[int], **kw: Any) -> None:
    batches = []
    for i in range(0, len(seqs), 32):  # a batch holds at most 32 events
        b = decode(topic("qadam", "gate-1"), dumps(batch_doc(seqs=seqs[i : i + 32], card=CARD_A,
                                                             **kw)))  # fmt: skip
        assert isinstance(b, Batch), b
        batches.append(b)
    write(conn, batches)


def _send(database_url: str, handler: Any) -> list[PushMessage]:
    push: RecordingPushService = handler.push
    worker = OutboxWorker(database_url, [handler], batch=50, poll_s=0.02, lease_s=30)
    while worker.run_once():
        pass
    return list(push.sent)


def _bodies(conn: Any, message: PushMessage) -> dict[str, str]:
    _, fields = _recipients_and_fields(conn, message)
    return {lang: render(message.kind, lang, fields)["body"] for lang in ("kk", "ru", "en")}


def test_a_fresh_tap_shows_date_and_time_in_the_school_zone(conn: Any, seed: Seed) -> None:
    t = (int(time.time()) - 120) // 60 * 60
    _write(conn, seqs=[1], t=t)
    (m,) = _send(conn.info.dsn, ParentNotificationHandler(RecordingPushService()))
    local = datetime.fromtimestamp(t + 9 * 3600, UTC)
    d, hm = local.strftime("%d.%m.%Y"), local.strftime("%H:%M")
    assert _bodies(conn, m) == {
        "kk": f"Alice Aliyeva мектепке келді, {d}, {hm}",
        "ru": f"Alice Aliyeva пришёл(ла) в школу {d} в {hm}",
        "en": f"Alice Aliyeva arrived at school on {local:%Y-%m-%d} at {hm}",
    }


def test_an_unsynced_tap_is_told_at_its_corrected_time(conn: Any, seed: Seed) -> None:
    now = int(time.time())
    # the board's clock says 2000-01-01; its boot's reference pair: at uptime 600 s it was now
    conn.execute(
        "INSERT INTO device_clock_refs (device_id, boot, t_ref, up_ref) VALUES ('gate-1', 7, %s,"
        " 600000)",
        (now,),
    )
    _write(conn, seqs=[1], t=946_684_800, sync=0, up=420_000)  # 180 s before the reference
    (m,) = _send(conn.info.dsn, ParentNotificationHandler(RecordingPushService()))
    assert m.occurred_at == datetime.fromtimestamp(now - 180, UTC).isoformat()
    assert "2000" not in _bodies(conn, m)["en"]


def test_a_tap_without_a_corrected_time_says_it_is_the_time_received(conn: Any, seed: Seed) -> None:
    _write(conn, seqs=[1], t=946_684_800, sync=0)  # no reference pair for its boot
    (m,) = _send(conn.info.dsn, ParentNotificationHandler(RecordingPushService()))
    received = conn.execute("SELECT received_at FROM events").fetchone()[0]
    assert m.occurred_at == received.isoformat()
    assert _bodies(conn, m)["en"].endswith("(the board's clock was not set: time received)")


def test_a_week_old_backlog_is_one_summary_per_child(
    conn: Any, database_url: str, seed: Seed
) -> None:
    week_ago = int(time.time()) - 7 * 86400
    _write(conn, seqs=range(1, 301), t=week_ago)  # two notes (256 taps per note), 300 taps
    _write(conn, seqs=[301], t=int(time.time()) - 60)  # and one tap of today
    sent = _send(database_url, ParentNotificationHandler(RecordingPushService()))
    assert sorted(m.kind for m in sent) == ["parent_notification", "tap_summary"]
    (summary,) = [m for m in sent if m.kind == "tap_summary"]
    assert summary.person_id == seed.alice
    assert summary.idempotency_key == f"late:{seed.alice}:{datetime.now(UTC).date()}"
    assert summary.payload is not None and summary.payload["count"] == 300
    first = datetime.fromtimestamp(week_ago + 9 * 3600, UTC)
    assert _bodies(conn, summary)["ru"] == (
        f"Alice Aliyeva: 300 проход(ов) с {first:%d.%m.%Y %H:%M} по {first:%d.%m.%Y %H:%M}"
        " поступили с опозданием (терминал был не в сети); они есть в посещаемости"
    )


def test_the_max_age_comes_from_the_settings(conn: Any, database_url: str, seed: Seed) -> None:
    _write(conn, seqs=[1, 2], t=int(time.time()) - 600)  # 10 minutes old
    push = RecordingPushService()
    (handler,) = [
        h
        for h in build_handlers(Settings(database_url=database_url, push_max_age_s=300), push)
        if h.kind == "parent_notification"
    ]
    assert [m.kind for m in _send(database_url, handler)] == ["tap_summary"]
    with pytest.raises(ValueError, match="push_max_age_s"):
        Settings(database_url=database_url, push_max_age_s=0)
