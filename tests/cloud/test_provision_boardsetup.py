"""Issue #14 item 4: the provisioning answer carries what only the cloud knows of a board's
setting-up (D27-C): TLS on or off with the CA the board must trust and the name the broker's
certificate is for, the NTP servers, the school's time zone as an offset in minutes, the device's
mode. A cloud configured for TLS without a usable CA does not start (one line, exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import World, build, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.provisioning.boardsetup import DEFAULT_NTP_SERVERS, load_ca_pem, tz_offset_min
from cloud.settings import Settings
from tests.tls_broker import make_pki

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextmanager
def _api(database_url: str, **over: Any) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    s = Settings(database_url=database_url, auth_required=True, **over)
    with TestClient(create_app(s)) as c:
        login_all(c, w, database_url)
        yield c, w


def _provision(c: TestClient, w: World, device: str = "gate-1") -> dict[str, Any]:
    r = c.post(f"/api/v1/devices/{device}/claim-token", headers=w.auth("technician"))
    assert r.status_code == 201, r.text
    r = c.post("/api/v1/provision", json={"device": device, "token": r.json()["token"]})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_plain_cloud_answers_ntp_time_zone_and_mode_without_tls(database_url: str) -> None:
    with _api(database_url, device_mqtt_port=1883) as (c, w):
        body = _provision(c, w)
    m = body["mqtt"]
    assert (m["tls"], m["ca_pem"], m["server_hostname"], m["port"]) == (False, None, None, 1883)
    assert body["ntp"] == list(DEFAULT_NTP_SERVERS)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT s.timezone, d.mode FROM devices d JOIN schools s ON s.id = d.school_id"
            " WHERE d.id = 'gate-1'"
        ).fetchone()
    assert row is not None
    assert body["timezone"] == row[0] and body["mode"] == row[1]
    assert body["tz_offset_min"] == tz_offset_min(row[0])


def test_tls_cloud_gives_the_ca_the_port_and_the_name_to_verify(
    database_url: str, pki: Path
) -> None:
    ca = str(pki / "ca.pem")
    with _api(
        database_url, device_mqtt_tls=True, device_ca_file=ca, device_mqtt_host="10.1.2.3",
        device_mqtt_server_name="mqtt.school.example", device_ntp_servers=("10.0.0.1:123",),
    ) as (c, w):  # fmt: skip
        with psycopg.connect(database_url) as conn:  # a school in the west of the country
            conn.execute("UPDATE schools SET timezone = 'Asia/Aqtau'")
        body = _provision(c, w)
    m = body["mqtt"]
    assert m["tls"] is True and m["port"] == 8883 and m["host"] == "10.1.2.3"
    assert m["server_hostname"] == "mqtt.school.example"
    assert m["ca_pem"] == (pki / "ca.pem").read_text().strip() + "\n"
    assert body["ntp"] == ["10.0.0.1:123"]
    assert (body["timezone"], body["tz_offset_min"]) == ("Asia/Aqtau", 300)


def test_tz_offset_follows_the_iana_zone_at_the_given_time() -> None:
    # Asia/Almaty moved from UTC+6 to UTC+5 on 2024-03-01 (tzdata 2024b): the offset a board is
    # given is the one in force when it is provisioned.
    assert tz_offset_min("Asia/Almaty", datetime(2024, 2, 1, tzinfo=UTC)) == 360
    assert tz_offset_min("Asia/Almaty", datetime(2025, 2, 1, tzinfo=UTC)) == 300
    assert tz_offset_min("Asia/Kolkata") == 330
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        tz_offset_min("Mars/Olympus")


def test_the_ca_file_is_checked(pki: Path, tmp_path: Path) -> None:
    assert load_ca_pem(str(pki / "ca.pem")).startswith("-----BEGIN CERTIFICATE-----")
    with pytest.raises(ValueError, match="is not a CA certificate"):
        load_ca_pem(str(pki / "good.pem"))  # the broker's own certificate, not its CA
    (tmp_path / "cut.pem").write_text((pki / "ca.pem").read_text()[:200])
    with pytest.raises(ValueError, match="does not parse"):
        load_ca_pem(str(tmp_path / "cut.pem"))
    with pytest.raises(ValueError, match="cannot read it"):
        load_ca_pem(str(tmp_path / "missing.pem"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QADAM_DEVICE_MQTT_TLS": "1"}, "QADAM_DEVICE_MQTT_TLS needs QADAM_DEVICE_CA_FILE"),
        ({"QADAM_DEVICE_MQTT_TLS": "1", "QADAM_DEVICE_CA_FILE": "/nonexistent/ca.pem"},
         "QADAM_DEVICE_CA_FILE '/nonexistent/ca.pem': cannot read it"),
        ({"QADAM_DEVICE_NTP_SERVERS": '["pool.ntp.org", "bad host"]'},
         "QADAM_DEVICE_NTP_SERVERS: 'bad host' is not HOST or HOST:PORT"),
        ({"QADAM_DEVICE_NTP_SERVERS": "[]"}, "QADAM_DEVICE_NTP_SERVERS: give 1 to 8 servers"),
    ],
)
def test_bad_board_settings_stop_the_start_with_one_line(
    env: dict[str, str], message: str
) -> None:
    code = (
        "from cloud.startup import load_settings, run_entry;"
        "raise SystemExit(run_entry(load_settings))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QADAM_")}
    r = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=REPO,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
