"""The console's fleet pages in-process (cloud/console/fleet.py, fleet_new.py, D28-E): who may
open them, the caller's scope (another school's board is "not found" and its commands go
nowhere), what a board's status shows, commands checked as the API checks them (a bad config
key or value, a door opened by a role that may not: refused, nothing queued), registration with
a one-time claim token, revocation and an audited delete. Chromium: test_fleet_browser.py."""

from __future__ import annotations

import hashlib
import html
import json
import re
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient

from cloud.console import fleet
from cloud.provisioning.dynsec import BrokerError
from cloud.provisioning.whitelists import record_status

EMAILS = {
    "platform_admin": "root@qadam.kz",
    "district_authority": "d1@qadam.kz",
    "school_admin": "admin1@qadam.kz",
    "canteen_operator": "cook1@qadam.kz",
    "technician": "tech1@qadam.kz",
}
STATUS = {
    "v": 1, "online": True, "fw": "0.4.2", "boot": 7, "wl": 3, "journal": 12, "heap": 41234,
    "up": 3600, "slot": "b", "clock": {"synced": 1, "t": 1760000000, "up": 1234, "off": -2},
    "net": {"if": "wlan", "ssid": "School-Staff", "ip": "10.0.0.7", "rssi": -81},
    "err": [[12, "link", "OSError 113", 4],
            [3540, "tls", "The certificate validity has expired", 1]],
}  # fmt: skip


def _as(client: TestClient, role: str) -> TestClient:
    assert sign_in(client, EMAILS[role], PASSWORD).status_code == 303
    return client


def _post(client: TestClient, path: str, data: dict[str, str]) -> Any:
    return client.post(path, data=data, headers=SAME_ORIGIN, follow_redirects=False)


def _one(url: str, q: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(q, params).fetchone()
    assert row is not None
    return row[0]


def _board_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="board-([a-z0-9-]+)"', html)


@pytest.mark.parametrize(
    ("role", "status", "boards"),
    [
        ("platform_admin", 200, ["gate-1", "gate-2", "gate-3"]),
        ("district_authority", 200, ["gate-1", "gate-2"]),
        ("school_admin", 200, ["gate-1"]),
        ("technician", 200, ["gate-1"]),
        ("canteen_operator", 403, []),
    ],
)
def test_who_sees_which_boards(
    client: TestClient, role: str, status: int, boards: list[str]
) -> None:
    r = _as(client, role).get("/fleet")
    assert r.status_code == status, r.text
    assert sorted(_board_ids(r.text)) == boards
    if status == 200:  # the menu has the fleet
        menu = re.search(r'<nav aria-label="Main">.*?</nav>', r.text, re.S)
        assert menu is not None and 'href="/fleet"' in menu.group(0)
    else:
        assert "This page is not available for your account." in r.text


def test_another_schools_board_is_not_found_and_gets_no_command(
    client: TestClient, database_url: str
) -> None:
    _as(client, "school_admin")
    assert client.get("/fleet/gate-2").status_code == 404
    assert client.get("/fleet/no-such-board").status_code == 404
    for path, data in (("/fleet/gate-2/commands", {"cmd": "reboot"}),
                       ("/fleet/gate-2/revoke", {}), ("/fleet/gate-2/delete", {}),
                       ("/fleet/gate-2/claim-token", {})):  # fmt: skip
        r = _post(client, path, data)
        assert r.status_code == 404 and "Not found" in r.text, path
    assert client.get("/fleet?school=s2").status_code == 422
    assert _one(database_url, "SELECT count(*) FROM device_commands") == 0
    assert _one(database_url, "SELECT count(*) FROM devices WHERE id = 'gate-2'") == 1
    assert _one(database_url, "SELECT count(*) FROM device_claim_tokens") == 0


def test_a_boards_status_is_shown_in_full(client: TestClient, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for v in (3, 4, 5):  # the school's lists: the board runs 3 of 5
            conn.execute("INSERT INTO whitelists (school_id, version, bytes, crc, count)"
                         " VALUES ('s1', %s, %s, 0, 0)", (v, bytes(32)))  # fmt: skip
        conn.execute(
            "INSERT INTO device_status (device_id, status, wl_version, online, last_seen)"
            " VALUES ('gate-1', %s, 3, true, now() - interval '2 minutes')",
            (json.dumps(STATUS),),
        )
    _as(client, "technician")
    r = client.get("/fleet")
    assert r.status_code == 200
    row = re.search(r'<tr id="board-gate-1".*?</tr>', r.text, re.S)
    assert row is not None
    cells = row.group(0)
    for text in ("online", "2 minutes ago", "0.4.2", "slot b", ">12<", "v3",
                 "2 versions behind", "-2 s off", "Wi-Fi -81 dBm", "weak", "tls",
                 "The certificate validity has expired", "OSError 113"):  # fmt: skip
        assert text in cells, text
    page = html.unescape(client.get("/fleet/gate-1").text)
    for text in ("the school's newest: v5", "School-Staff", "10.0.0.7", "boot 7",
                 "the board refused the broker's certificate", "41,234",
                 "0 events in the last 24 hours"):  # fmt: skip
        assert text in page, text
    # filters: online, offline, mode, and a value the page does not know
    assert _board_ids(client.get("/fleet?state=online").text) == ["gate-1"]
    assert _board_ids(client.get("/fleet?state=offline").text) == []
    assert _board_ids(client.get("/fleet?mode=turnstile").text) == ["gate-1"]
    assert _board_ids(client.get("/fleet?mode=canteen").text) == []
    bad = client.get("/fleet?mode=rocket")
    assert bad.status_code == 422 and "Unknown mode." in bad.text


def test_commands_are_checked_like_the_api(client: TestClient, database_url: str) -> None:
    _as(client, "technician")
    n_audit = _one(database_url, "SELECT count(*) FROM audit_log")
    # a key the board does not have, a value out of its range, a command that does not exist
    r = _post(client, "/fleet/gate-1/commands", {"cmd": "config", "key": "wifi_key", "value": "x"})
    assert r.status_code == 422 and "The board has no setting wifi_key." in r.text
    r = _post(client, "/fleet/gate-1/commands",
              {"cmd": "config", "key": "heartbeat_s", "value": "5"})  # fmt: skip
    assert r.status_code == 422
    assert "The board does not take this value for heartbeat_s. Allowed: 10–86400." in r.text
    assert 'value="5"' in r.text  # the form keeps what was typed
    assert _post(client, "/fleet/gate-1/commands", {"cmd": "selfdestruct"}).status_code == 422
    # a technician may not open a door (the API's DOOR_OPENERS)
    assert _post(client, "/fleet/gate-1/commands", {"cmd": "open"}).status_code == 403
    assert _one(database_url, "SELECT count(*) FROM device_commands") == 0
    assert _one(database_url, "SELECT count(*) FROM audit_log") == n_audit
    # what the board takes is queued, with its audit row
    r = _post(client, "/fleet/gate-1/commands",
              {"cmd": "config", "key": "heartbeat_s", "value": "30"})  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/fleet/gate-1?done=config"
    r = _post(client, "/fleet/gate-1/commands", {"cmd": "reboot"})
    assert r.status_code == 303
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT cmd, args, state, actor FROM device_commands ORDER BY id"
        ).fetchall()
        audited = conn.execute(
            "SELECT count(*) FROM audit_log WHERE entity = 'device_commands'"
        ).fetchone()
    tech = _one(database_url, "SELECT id FROM users WHERE email = 'tech1@qadam.kz'")
    assert rows == [("config", {"set": {"heartbeat_s": 30}}, "queued", f"user:{tech}"),
                    ("reboot", {}, "queued", f"user:{tech}")]  # fmt: skip
    assert audited == (2,)
    page = html.unescape(client.get("/fleet/gate-1?done=reboot").text)
    assert '"Restart" is queued' in page
    assert page.count("waiting for the board") == 2


def test_open_the_door_is_for_school_admins_and_a_district_only_reads(
    client: TestClient, database_url: str
) -> None:
    _as(client, "school_admin")
    page = client.get("/fleet/gate-1").text
    assert 'id="cmd-open"' in page and "data-confirm" in page
    assert _post(client, "/fleet/gate-1/commands", {"cmd": "open"}).status_code == 303
    assert _one(database_url, "SELECT cmd FROM device_commands") == "open"
    client.post("/logout", headers=SAME_ORIGIN)
    _as(client, "district_authority")
    page = client.get("/fleet/gate-2").text
    assert "gate-2" in page and 'id="cmd-reboot"' not in page and 'id="delete"' not in page
    assert _post(client, "/fleet/gate-2/commands", {"cmd": "reboot"}).status_code == 403
    assert client.get("/fleet/new").status_code == 403
    assert _one(database_url, "SELECT count(*) FROM device_commands") == 1


def test_register_a_board_shows_its_claim_token_once(client: TestClient, database_url: str) -> None:
    _as(client, "technician")
    form = client.get("/fleet/new")
    assert form.status_code == 200 and 'name="id"' in form.text
    r = _post(client, "/fleet/new", {"id": "Canteen-1 ", "school_id": "s1", "mode": "canteen",
                                     "direction": "both", "place": "dining hall"})  # fmt: skip
    assert r.status_code == 200, r.text
    token = re.search(r'<code id="claim-token" class="token">([^<]+)</code>', r.text)
    assert token is not None
    assert "<svg" in r.text and "esp32-canteen-pn532-ssd1306.json" in r.text
    assert "--claim-file canteen-1.claim --device canteen-1" in r.text
    assert "--cloud https://testserver" in r.text and "--wifi-file" in r.text
    digest = hashlib.sha256(token.group(1).encode()).digest()
    assert _one(database_url, "SELECT device_id FROM device_claim_tokens WHERE token_hash = %s",
                (digest,)) == "canteen-1"  # fmt: skip
    assert _one(database_url, "SELECT place FROM devices WHERE id = 'canteen-1'") == "dining hall"
    assert _one(database_url, "SELECT count(*) FROM audit_log WHERE entity_id = 'canteen-1'") >= 2
    # the token is in that answer only: the board's page does not show it
    assert token.group(1) not in client.get("/fleet/canteen-1").text
    # an Ethernet board's command has no Wi-Fi
    r = _post(client, "/fleet/new", {"id": "gate-9", "school_id": "s1", "mode": "door",
                                     "config": "wt32-eth01-door-wiegand.json"})  # fmt: skip
    assert r.status_code == 200 and "--wifi-file" not in r.text


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({"id": "-bad", "school_id": "s1", "mode": "door"}, 422, "A board id is 1 to 32"),
        ({"id": "gate-7", "school_id": "s1", "mode": "rocket"}, 422, "Choose the board's mode."),
        ({"id": "gate-7", "school_id": "", "mode": "door"}, 422, "Choose a school."),
        (
            {"id": "gate-7", "school_id": "s1", "mode": "door", "config": "../x.json"},
            422,
            "Choose one of the board configs.",
        ),
        ({"id": "gate-7", "school_id": "s2", "mode": "door"}, 409, "No such school."),
        (
            {"id": "gate-1", "school_id": "s1", "mode": "door"},
            409,
            "A board with this id exists already.",
        ),
    ],
)
def test_a_bad_registration_is_refused_and_changes_nothing(
    client: TestClient, database_url: str, data: dict[str, str], status: int, message: str
) -> None:
    _as(client, "technician")
    before = _one(database_url, "SELECT count(*) FROM audit_log")
    r = _post(client, "/fleet/new", data)
    assert r.status_code == status and message in html.unescape(r.text), r.text
    assert 'id="claim-token"' not in r.text
    assert _one(database_url, "SELECT count(*) FROM devices") == 3
    assert _one(database_url, "SELECT count(*) FROM device_claim_tokens") == 0
    assert _one(database_url, "SELECT count(*) FROM audit_log") == before


def test_delete_is_audited_and_a_board_with_events_stays(
    client: TestClient, database_url: str, world: World
) -> None:
    _as(client, "school_admin")
    r = _post(client, "/fleet/new", {"id": "spare-1", "school_id": "s1", "mode": "door"})
    assert r.status_code == 200
    with psycopg.connect(database_url) as conn:  # as if it had been provisioned
        conn.execute("INSERT INTO device_credentials (device_id, mqtt_username, broker_acl)"
                     " VALUES ('spare-1', 'board.spare-1', false)")  # fmt: skip
    r = _post(client, "/fleet/spare-1/delete", {})
    assert r.status_code == 303 and r.headers["location"] == "/fleet?deleted=spare-1"
    assert "Board spare-1 was deleted" in client.get(r.headers["location"]).text
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM devices WHERE id = 'spare-1'").fetchone() == (0,)
        audit = conn.execute(
            "SELECT action, entity, actor FROM audit_log WHERE entity_id = 'spare-1'"
            " AND action IN ('delete', 'revoke') ORDER BY id"
        ).fetchall()
        retired = conn.execute("SELECT school_id FROM retired_devices WHERE device_id = 'spare-1'")
        assert retired.fetchone() == ("s1",)
    assert [(a, e) for a, e, _ in audit] == [("delete", "devices"),
                                             ("revoke", "device_credentials")]  # fmt: skip
    assert all("admin1@qadam.kz" in str(actor) for _, _, actor in audit)
    # gate-1 has events: it stays, and the page says to revoke instead
    r = _post(client, "/fleet/gate-1/delete", {})
    assert r.status_code == 409 and "revoke its access instead" in r.text
    assert _one(database_url, "SELECT count(*) FROM devices WHERE id = 'gate-1'") == 1


def test_revoke_and_a_new_claim_token(client: TestClient, database_url: str) -> None:
    _as(client, "technician")
    r = _post(client, "/fleet/gate-1/revoke", {})
    assert r.status_code == 409 and "no access to revoke" in r.text  # nothing provisioned yet
    r = _post(client, "/fleet/gate-1/claim-token", {})
    assert r.status_code == 200 and 'id="claim-token"' in r.text
    r = _post(client, "/fleet/gate-1/revoke", {})
    assert r.status_code == 303 and r.headers["location"] == "/fleet/gate-1?done=revoked"
    assert _one(database_url, "SELECT count(*) FROM device_claim_tokens"
                " WHERE device_id = 'gate-1' AND expires_at > now()") == 0  # fmt: skip
    assert _one(database_url, "SELECT count(*) FROM audit_log WHERE entity_id = 'gate-1'"
                " AND action = 'revoke'") == 1  # fmt: skip


@pytest.mark.parametrize(
    ("lang", "words"),
    [("ru", ["Парк устройств", "Зарегистрировать"]), ("kk", ["Құрылғылар", "Құрылғыны тіркеу"])],
)
def test_the_fleet_speaks_the_language(client: TestClient, lang: str, words: list[str]) -> None:
    assert sign_in(client, EMAILS["technician"], PASSWORD, lang=lang).status_code == 303
    r = client.get("/fleet", headers={"Accept-Language": lang})
    assert r.status_code == 200
    for w in words:
        assert w in r.text, w


def test_a_technicians_start_page_is_the_fleet(client: TestClient) -> None:
    r = _as(client, "technician").get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/fleet"


class _RefusingBroker:
    """A broker that does not answer when a board's account is to be disabled."""

    enforced = True

    def disable(self, device: str, username: str) -> bool:
        raise BrokerError("broker unreachable")


def test_a_broker_failure_deletes_nothing(
    client: TestClient, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page catches the broker's error to answer in words, so the delete must roll back
    to its savepoint: the board, its credentials and the audit stay as they were."""
    _as(client, "technician")
    assert _post(client, "/fleet/new", {"id": "spare-2", "school_id": "s1",
                                        "mode": "door"}).status_code == 200  # fmt: skip
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO device_credentials (device_id, mqtt_username, broker_acl)"
                     " VALUES ('spare-2', 'board.spare-2', true)")  # fmt: skip
    audit = _one(database_url, "SELECT count(*) FROM audit_log")
    monkeypatch.setattr(fleet, "broker_accounts", lambda settings: _RefusingBroker())
    for action in ("delete", "revoke"):
        r = _post(client, f"/fleet/spare-2/{action}", {})
        assert r.status_code == 503 and "nothing was changed" in r.text, action
    assert _one(database_url, "SELECT count(*) FROM devices WHERE id = 'spare-2'") == 1
    assert _one(database_url, "SELECT revoked_at FROM device_credentials"
                " WHERE device_id = 'spare-2'") is None  # fmt: skip
    assert _one(database_url, "SELECT count(*) FROM retired_devices") == 0
    assert _one(database_url, "SELECT count(*) FROM audit_log") == audit


def test_a_diagnostics_answer_is_shown(client: TestClient, database_url: str) -> None:
    diag = {
        "status": {"v": 1, "online": True, "heap": 30111, "journal": 4},
        "log": "7 120 tls The certificate is not correctly signed",
        "menu": ["2026-12-08"],
    }
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO device_commands (device_id, school_id, cmd, actor, state, expires_at,"
            " done_at, reply) VALUES ('gate-1', 's1', 'diag', 'system', 'ok',"
            " now() + interval '1 hour', now(), %s)",
            (json.dumps({"v": 1, "id": 1, "ok": True, "diag": diag}),),
        )
        conn.execute(
            "INSERT INTO device_commands (device_id, school_id, cmd, actor, state, expires_at,"
            " done_at, error) VALUES ('gate-1', 's1', 'config', 'system', 'failed',"
            " now() + interval '1 hour', now(), 'bad_value:relay_ms')"
        )
    page = html.unescape(_as(client, "school_admin").get("/fleet/gate-1").text)
    for text in ("Diagnostics", '"heap": 30111', "The certificate is not correctly signed",
                 "Menu dates: 2026-12-08", "bad_value:relay_ms", "failed", "done"):  # fmt: skip
        assert text in page, text


def test_an_offline_board_shows_what_it_said_last_online(
    client: TestClient, database_url: str
) -> None:
    """The last will replaces the stored status; the worker keeps the last online one (0033)."""
    with psycopg.connect(database_url) as conn:
        assert record_status(conn, "gate-1", STATUS, retained=False)
        assert record_status(conn, "gate-1", {"v": 1, "online": False}, retained=True)
        stored = conn.execute("SELECT status, online FROM device_status").fetchone()
    assert stored == ({"v": 1, "online": False}, False)  # what the other workers read
    page = html.unescape(_as(client, "technician").get("/fleet/gate-1").text)
    for text in ("offline", "below is what it reported when it was last online", "0.4.2",
                 "The certificate validity has expired", "Wi-Fi -81 dBm"):  # fmt: skip
        assert text in page, text
    listed = client.get("/fleet?state=offline").text
    assert _board_ids(listed) == ["gate-1"] and "0.4.2" in listed
