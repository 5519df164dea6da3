"""The fleet pages in Debian's Chromium (Playwright), at 390 px and at desktop width, as a
technician uses them: register a board and see its claim token as a QR code and the flash
command; the board comes online (a retained status published on its status topic, as a real
board does, stored by the whitelist worker); a restart sent from its page goes out through the
command pusher, the board answers, and the page shows it done without a reload; a confirm
dialog said no to changes nothing. Screenshots: docs/screenshots/console/fleet-*.png."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
import uvicorn
from api_world import World
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, expect
from test_console_browser import DESKTOP, PHONE, SHOTS, Tab
from test_console_browser import browser as browser  # noqa: F401 (the fixture)

from cloud.api.app import create_app
from cloud.settings import Settings
from cloud.workers.command_push import CommandPush
from cloud.workers.whitelist_push import WhitelistPush


def _full_shot(tab: Tab, name: str) -> None:
    """The whole page, not only the window (a board's page and the label run long)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cloud(
    database_url: str, world: World, topic_prefix: str, mqtt_addr: tuple[str, int]
) -> Iterator[Settings]:
    """The web app on a loopback port and the two workers a board's page relies on (status
    into device_status; commands out and replies in), all on this test's topic prefix."""
    settings = Settings(database_url=database_url, auth_required=True, http_port=_free_port(),
                        mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1], topic_prefix=topic_prefix,
                        command_poll_ms=100, whitelist_poll_ms=200)  # fmt: skip
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                        port=settings.http_port, log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    workers = [WhitelistPush(settings), CommandPush(settings)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline, "web server did not start"
        time.sleep(0.05)
    assert all(w.wait_ready(10) for w in workers)
    yield settings
    for w in workers:
        w.stop()
    srv.should_exit = True
    thread.join(10)


class Board:
    """A board on the broker as the firmware behaves there: its retained status on
    ``.../status`` and a reply on ``.../cmd/res`` to each command (protocol.md)."""

    def __init__(self, settings: Settings, device: str) -> None:
        self.base = f"{settings.topic_prefix}/v1/dev/{device}"
        self.got: list[dict[str, Any]] = []
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id=device, protocol=mqtt.MQTTv311)  # fmt: skip
        self.c.on_message = self._command
        self.c.will_set(self.base + "/status", '{"v":1,"online":false}', qos=1, retain=True)
        self.c.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
        self.c.loop_start()
        self.c.subscribe(self.base + "/cmd", qos=1)
        time.sleep(0.3)

    def _command(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        doc = json.loads(m.payload)
        self.got.append(doc)
        reply = {"v": 1, "id": doc["id"], "ok": True}
        self.c.publish(self.base + "/cmd/res", json.dumps(reply), qos=1)

    def online(self) -> None:
        status = {"v": 1, "online": True, "fw": "0.4.2", "boot": 1, "up": 5, "wl": 0,
                  "journal": 0, "heap": 40000, "clock": {"synced": 1, "t": int(time.time()),
                  "up": 4000, "off": 0}, "net": {"if": "wlan", "ssid": "School-Staff",
                  "ip": "10.0.0.9", "rssi": -58}}  # fmt: skip
        info = self.c.publish(self.base + "/status", json.dumps(status), qos=1, retain=True)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.c.publish(self.base + "/status", b"", qos=1, retain=True).wait_for_publish(10)
        self.c.loop_stop()
        self.c.disconnect()


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_register_a_board_see_it_online_and_restart_it(
    browser: Browser,  # noqa: F811
    cloud: Settings,
    database_url: str,
    viewport: dict[str, int],
    width: str,
) -> None:
    site = f"http://127.0.0.1:{cloud.http_port}"
    tab = Tab(browser, site, viewport, "en-US")
    p = tab.sign_in("tech1@qadam.kz")
    p.goto(site + "/fleet")
    expect(p.locator("h1")).to_have_text("Fleet")
    expect(p.locator("#board-gate-1")).to_contain_text("offline")

    # register: the form by its labels, sent with the keyboard
    p.get_by_role("link", name="Register a board").click()
    expect(p).to_have_url(site + "/fleet/new")
    device = f"door-{width}"
    p.get_by_label("Board id").fill(device)
    p.get_by_label("Mode").select_option("door")
    p.get_by_label("Where it stands").select_option("in")
    p.get_by_label("Place (optional)").fill("main entrance")
    tab.shot(f"fleet-new-form-{width}")
    p.get_by_label("Place (optional)").press("Enter")
    expect(p.get_by_role("status")).to_have_text(f"Board {device} is registered.")
    expect(p.locator("figure.qr svg")).to_be_visible()
    token = p.locator("#claim-token").inner_text()
    assert token.startswith("c") and len(token) > 40
    expect(p.locator("#flash-command")).to_contain_text(f"--device {device}")
    expect(p.locator("#flash-command")).to_contain_text("esp32-devkitc-door-mfrc522.json")
    _full_shot(tab, f"fleet-new-{width}")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM device_claim_tokens WHERE device_id = %s",
                            (device,)).fetchone() == (1,)  # fmt: skip

    # the board comes online; its page sees it without a reload
    board = Board(cloud, device)
    try:
        p.get_by_role("link", name="Open the board's page").click()
        expect(p).to_have_url(f"{site}/fleet/{device}")
        board.online()
        expect(p.locator("#board-state")).to_contain_text("online", timeout=20_000)
        expect(p.locator("#board-live")).to_contain_text("Wi-Fi -58 dBm")

        # a confirm dialog said no: nothing is revoked
        p.once("dialog", lambda d: d.dismiss())
        p.get_by_role("button", name="Revoke access").click()
        expect(p).to_have_url(f"{site}/fleet/{device}")
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'revoke'").fetchone()
        assert row == (0,)

        # restart: queued, sent by the pusher, answered by the board, shown as done
        p.get_by_role("button", name="Restart").click()
        expect(p).to_have_url(f"{site}/fleet/{device}?done=reboot")
        expect(p.get_by_role("status")).to_contain_text('"Restart" is queued')
        expect(p.locator("#commands tbody tr").first).to_contain_text("done", timeout=20_000)
        assert [c["cmd"] for c in board.got] == ["reboot"]
        _full_shot(tab, f"fleet-board-{width}")

        p.get_by_role("link", name="Back to the fleet").click()
        row_of = p.locator(f"#board-{device}")
        expect(row_of).to_contain_text("online")
        expect(row_of).to_contain_text("0.4.2")
        expect(p.locator("#fleet-summary")).to_contain_text("2 boards")
        p.get_by_label("State").select_option("offline")
        p.get_by_role("button", name="Show").click()
        expect(p.locator(f"#board-{device}")).to_have_count(0)
        expect(p.locator("#board-gate-1")).to_have_count(1)
        p.goto(site + "/fleet")
        tab.shot(f"fleet-list-{width}")
    finally:
        board.close()
    tab.clean()


def test_a_school_admin_opens_the_door_once_after_confirming(
    browser: Browser,  # noqa: F811
    cloud: Settings,
    database_url: str,
) -> None:
    site = f"http://127.0.0.1:{cloud.http_port}"
    tab = Tab(browser, site, DESKTOP, "en-US")
    p = tab.sign_in("admin1@qadam.kz")
    p.goto(site + "/fleet/gate-1")
    asked: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    p.once("dialog", lambda d: answer(d, False))
    p.get_by_role("button", name="Open the door once").click()
    expect(p).to_have_url(site + "/fleet/gate-1")
    p.once("dialog", lambda d: answer(d, True))
    p.get_by_role("button", name="Open the door once").click()
    expect(p).to_have_url(site + "/fleet/gate-1?done=open")
    expect(p.locator("#commands tbody tr").first).to_contain_text("Open the door once")
    assert asked == ["Open the door of gate-1 once, now?"] * 2
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT cmd, state FROM device_commands").fetchall()
    assert rows == [("open", "queued")]  # gate-1 is offline: it waits (60 s at most)
    tab.clean()
