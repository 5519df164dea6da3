"""The e-journal adapter (D29-I): our OAuth2 client credentials client (a token fetched once,
reused until shortly before it expires, fetched again once on a 401) against a fake e-journal
that speaks it, and a school's day queued by `qadam ejournal push`, built from what the ingest
stored and received by the fake through the outbox: present, absent, late by how much."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import psycopg
import pytest
from api_world import CARD_ALICE, CARD_AMIR, World
from fake_ejournal import CLIENT_ID, CLIENT_SECRET, FakeEJournal

from cloud.domain import registry
from cloud.integrations.ejournal.contract import PermanentError, PupilDay, SchoolDay
from cloud.integrations.ejournal.handler import EJournalHandler, handler_from_settings
from cloud.integrations.ejournal.oauth import SKEW_S, ClientCredentials
from cloud.integrations.ejournal.rest import RestEJournal
from cloud.settings import Settings
from cloud.workers.outbox import OutboxWorker, build_handlers
from tools.cli import main as qadam

DAY = date(2026, 11, 10)


def _oauth(fake: FakeEJournal, secret: str = CLIENT_SECRET, **kw: Any) -> ClientCredentials:
    return ClientCredentials(fake.base + "/oauth/token", CLIENT_ID, secret, **kw)


def _day(n: int = 1) -> SchoolDay:
    pupils = [PupilDay(i, f"P{i}", "5A", True, None, None, 0) for i in range(n)]
    return SchoolDay("s1", "KZ-0001", DAY, "08:30", pupils)


def test_the_token_is_fetched_once_reused_refreshed_before_expiry_and_after_a_401() -> None:
    now = [1000.0]
    with FakeEJournal() as fake:
        adapter = RestEJournal(fake.base + "/api", _oauth(fake, clock=lambda: now[0]))
        assert adapter.push_day(_day(), "k1").reference == "day-k1"
        adapter.push_day(_day(), "k2")
        assert fake.token_requests == 1  # cached
        now[0] += 3600 - SKEW_S  # about to expire: a new one first
        adapter.push_day(_day(), "k3")
        assert fake.token_requests == 2 and fake.puts["401"] == 0
        fake.revoke_all()  # the server ends it early: one 401, a new token, the same request
        adapter.push_day(_day(), "k4")
        assert fake.token_requests == 3 and fake.puts["401"] == 1
        assert fake.puts["stored"] == 4 and set(fake.keys) == {"k1", "k2", "k3", "k4"}


def test_refused_credentials_are_permanent_and_send_nothing() -> None:
    with FakeEJournal() as fake:
        adapter = RestEJournal(fake.base + "/api", _oauth(fake, secret="wrong"))
        with pytest.raises(PermanentError, match="refused"):
            adapter.push_day(_day(), "k1")
        assert fake.puts == {} and fake.days == {}


def _at(url: str, local: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM (%s::timestamp AT TIME ZONE timezone))::int8"
            " FROM schools WHERE id = 's1'",
            (local,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _tap(url: str, seq: int, card: str, t: int, reader: str = "in") -> None:
    from cloud_helpers import batch_doc, dumps, topic

    from cloud.ingest.decode import Batch, decode
    from cloud.ingest.writer import write

    doc = batch_doc(dev="gate-1", boot=9, seqs=[seq], card=card, reader=reader)
    doc["events"][0]["t"] = t
    b = decode(topic("qadam", "gate-1"), dumps(doc))
    assert isinstance(b, Batch)
    with psycopg.connect(url, autocommit=True) as conn:
        assert write(conn, [b]).inserted == 1


def _worker(url: str, fake: FakeEJournal) -> OutboxWorker:
    handler = EJournalHandler(RestEJournal(fake.base + "/api", _oauth(fake)))
    return OutboxWorker(url, [handler], batch=5, poll_s=0.05, lease_s=5, max_attempts=5,
                        backoff_base_s=0.05, backoff_max_s=0.2)  # fmt: skip


def _wait(url: str, n: int) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + 20
    while True:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT idempotency_key, delivered_at, dead_at, attempts, last_error FROM outbox"
                " WHERE kind = 'ejournal_day' ORDER BY id"
            ).fetchall()
        if sum(1 for r in rows if r[1] or r[2]) == n:
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


def test_a_schools_day_reaches_the_ejournal_through_the_outbox(
    database_url: str, world: World, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    with psycopg.connect(database_url) as conn:
        dina = registry.add_person(conn, "s1", "student", "Dina Dinova")  # stays at home
    _tap(database_url, 1, CARD_ALICE, _at(database_url, "2026-11-10 08:10"))
    _tap(database_url, 2, CARD_AMIR, _at(database_url, "2026-11-10 08:47:30"))
    _tap(database_url, 3, CARD_ALICE, _at(database_url, "2026-11-10 14:05"), reader="out")
    monkeypatch.setenv("QADAM_DATABASE_URL", database_url)
    push = ["ejournal", "push", "--date", "2026-11-10", "--school", "s1"]
    assert qadam(push) == 1  # not connected yet: said, nothing queued
    assert "not connected" in capsys.readouterr().err
    assert qadam(["ejournal", "connect", "--school", "s1", "--external-id", "KZ-0001",
                  "--starts-at", "08:30"]) == 0  # fmt: skip
    assert qadam(push) == 0
    assert qadam(push) == 0  # queued before: not again without --again
    assert "queued before" in capsys.readouterr().out
    with FakeEJournal() as fake:
        fake.fail_next = [503]  # the first attempt meets an outage
        w = _worker(database_url, fake)
        w.start()
        try:
            rows = _wait(database_url, 1)
            assert rows[0][0] == "ejournal:s1:2026-11-10:1" and rows[0][1] is not None
            assert rows[0][3] == 2  # 503, then stored
            got = fake.days[("KZ-0001", "2026-11-10")]
            pupils = {p["qadam_id"]: p for p in got["pupils"]}
            assert set(pupils) == {world.ids["alice"], world.ids["amir"], dina}
            alice, amir = pupils[world.ids["alice"]], pupils[world.ids["amir"]]
            assert alice["present"] and alice["late_minutes"] == 0 and alice["last_out"]
            assert alice["class"] == "5A"
            assert amir["present"] and amir["late_minutes"] == 18  # 08:47:30 -> 18 min late
            assert not pupils[dina]["present"] and pupils[dina]["first_in"] is None
            assert got["starts_at"] == "08:30"
            # a correction: Amir's exit arrives late; the day is sent again as revision 2
            _tap(database_url, 4, CARD_AMIR, _at(database_url, "2026-11-10 15:00"), "out")
            assert qadam([*push, "--again"]) == 0
            rows = _wait(database_url, 2)
        finally:
            w.stop()
    assert rows[1][0] == "ejournal:s1:2026-11-10:2"
    amir = next(p for p in fake.days[("KZ-0001", "2026-11-10")]["pupils"]
                if p["qadam_id"] == world.ids["amir"])  # fmt: skip
    assert amir["last_out"] is not None
    assert fake.puts["stored"] == 2 and all(v == 1 for v in fake.keys.values())


def test_the_outbox_worker_gets_the_handler_only_when_configured(tmp_path: Any) -> None:
    base = Settings(database_url="postgresql://unused/x")
    assert "ejournal_day" not in {h.kind for h in build_handlers(base)}
    secret = tmp_path / "secret"
    secret.write_text(CLIENT_SECRET + "\n")
    s = base.model_copy(update={"ejournal_url": "https://ej.example.kz/api",
                                "ejournal_token_url": "https://ej.example.kz/oauth/token",
                                "ejournal_client_id": CLIENT_ID,
                                "ejournal_client_secret_file": str(secret)})  # fmt: skip
    assert "ejournal_day" in {h.kind for h in build_handlers(s)}
    with pytest.raises(ValueError, match="ejournal_token_url"):
        handler_from_settings(base.model_copy(update={"ejournal_url": "https://ej.example.kz"}))


def test_the_daily_hook_queues_each_connected_schools_day_once_after_its_hour(
    database_url: str, world: World
) -> None:
    from datetime import datetime

    from cloud.integrations.ejournal import daily, job

    with psycopg.connect(database_url) as conn:
        job.connect_school(conn, "s1", "KZ-0001")
        job.connect_school(conn, "s3", "KZ-0003")
        conn.execute("UPDATE schools SET timezone = 'Asia/Tokyo' WHERE id = 's3'")  # UTC+9
        at = datetime.fromisoformat("2026-11-10T14:30:00+00:00")  # 19:30 in s1 (UTC+5)
        assert daily.tick(conn, "20:00", at) == ["ejournal:s3:2026-11-10:1"]  # 23:30 in s3
        at = datetime.fromisoformat("2026-11-10T15:05:00+00:00")  # 20:05 in s1
        assert daily.tick(conn, "20:00", at) == ["ejournal:s1:2026-11-10:1"]
        assert daily.tick(conn, "20:00", at) == []  # once a day
        at = datetime.fromisoformat("2026-11-10T15:30:00+00:00")  # past midnight in s3
        assert daily.tick(conn, "20:00", at) == []  # s3's new day is not due until 20:00
