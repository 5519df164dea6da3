"""`python -m cloud.ingest` and `python -m cloud.api` started as processes against an EMPTY
database: each applies the migrations on start, then works, and stops cleanly on SIGINT.

And every entry point started badly (issue #13 items 5 and 15, cloud/startup.py): a bad setting,
an unreachable database or an open start (authentication off, an anonymous broker, no or a
board-shaped broker account) ends in ONE line on stderr and exit code 2 (3: unreachable), no
traceback; the open start is allowed only with --insecure-dev / QADAM_INSECURE_DEV=1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from auth_tokens import make_admin_token
from cloud_helpers import drop_session
from dynsec_broker import wait_listening
from fake_board import FakeBoard

from cloud.db.migrate import migration_files

REPO = Path(__file__).resolve().parents[2]
ALL = [p.name for p in migration_files()]


class Proc:
    """A child process whose stderr lines are collected by a thread (nothing blocks on a pipe)."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.p = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def sigint(self, timeout: float = 30) -> int:
        self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("did not stop within 30 s of SIGINT:\n" + self.output()) from None
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def _migrations(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def _has_table(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_python_m_cloud_ingest_migrates_an_empty_database_then_ingests(
    empty_database_url: str,
    topic_prefix: str,
    mqtt_addr: tuple[str, int],
    insecure_dev_env: dict[str, str],
) -> None:
    assert not _has_table(empty_database_url, "schema_migrations")
    client_id = f"ingest-{topic_prefix}"
    proc = Proc(
        "cloud.ingest",
        {
            "QADAM_DATABASE_URL": empty_database_url,
            "QADAM_MQTT_HOST": mqtt_addr[0],
            "QADAM_MQTT_PORT": str(mqtt_addr[1]),
            "QADAM_TOPIC_PREFIX": topic_prefix,
            "QADAM_INGEST_CLIENT_ID": client_id,
            "QADAM_INGEST_FLUSH_MS": "20",
            **insecure_dev_env,  # the machine's broker lets anonymous clients in
        },
    )
    board = None
    try:
        deadline = time.monotonic() + 60
        msgs: list[str] = []
        while "mqtt subscribed" not in msgs and time.monotonic() < deadline:
            assert proc.p.poll() is None, "ingest exited:\n" + proc.output()
            msgs = [json.loads(line)["msg"] for line in list(proc.lines) if line.startswith("{")]
            time.sleep(0.05)
        assert "mqtt subscribed" in msgs, "ingest never subscribed:\n" + proc.output()
        # The migrations ran on start, before the ingest connected, and every one is recorded.
        assert f"schema up to date applied={len(ALL)}" in msgs
        assert msgs.index(f"schema up to date applied={len(ALL)}") < msgs.index("mqtt connected")
        # started open on purpose: the banner says what is open
        assert any(m.startswith("OPEN: no broker account") for m in msgs), msgs
        assert _migrations(empty_database_url) == ALL

        # And it works on the schema it created: an unknown device's batch is quarantined and
        # acked (D4), so the board's journal drains.
        board = FakeBoard(mqtt_addr[0], mqtt_addr[1], topic_prefix, "ghost-1", "00" * 8)
        board.tap(3)
        while board.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert board.pending() == 0, "no ack from the ingest:\n" + proc.output()
        with psycopg.connect(empty_database_url) as conn:
            rows = conn.execute("SELECT device_id, reason, first_seq, last_seq FROM quarantine")
            assert rows.fetchall() == [("ghost-1", "unknown_device", 1, 3)]

        rc = proc.sigint()
        assert rc == 0, proc.output()
        assert "Traceback" not in proc.output()
    finally:
        if board is not None:
            board.close()
        proc.kill()
        drop_session(mqtt_addr[0], mqtt_addr[1], client_id)


def test_python_m_cloud_api_migrates_an_empty_database_then_serves(
    empty_database_url: str, insecure_dev_env: dict[str, str]
) -> None:
    assert not _has_table(empty_database_url, "events")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(
        "cloud.api",
        {
            "QADAM_DATABASE_URL": empty_database_url,
            "QADAM_HTTP_HOST": "127.0.0.1",
            "QADAM_HTTP_PORT": str(port),
            **insecure_dev_env,  # no broker accounts (QADAM_MQTT_DYNSEC=0) on this machine
        },
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while status is None and time.monotonic() < deadline:
            assert proc.p.poll() is None, "API exited:\n" + proc.output()
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
                    status = resp.status
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert status == 200, "API never answered /healthz:\n" + proc.output()
        assert _migrations(empty_database_url) == ALL
        assert _has_table(empty_database_url, "events")
        # authentication is on by default: no token, no events (issue #13 item 5)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/api/v1/events", timeout=5)
        assert refused.value.code == 401
        token = make_admin_token(empty_database_url)
        req = urllib.request.Request(
            base + "/api/v1/events", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
            assert json.load(resp)["total"] == 0  # the events query runs on the new schema

        rc = proc.sigint()
        assert rc == 0, proc.output()
        assert "Traceback" not in proc.output()
    finally:
        proc.kill()


# -- bad starts: one line on stderr, exit 2 (configuration) or 3 (unreachable) ---------------------
ENTRY_POINTS = {
    "python -m cloud.api": ["-m", "cloud.api"],
    "python -m cloud.ingest": ["-m", "cloud.ingest"],
    "python -m cloud.db.migrate": ["-m", "cloud.db.migrate"],
    "python -m cloud.workers.outbox": ["-m", "cloud.workers.outbox"],
    "python -m cloud.workers.reports": ["-m", "cloud.workers.reports"],
    "python -m cloud.workers.whitelist_push": ["-m", "cloud.workers.whitelist_push"],
    "python -m cloud.workers.balance_push": ["-m", "cloud.workers.balance_push"],
    "python -m cloud.workers.command_push": ["-m", "cloud.workers.command_push"],
    "python -m cloud.workers.ota_push": ["-m", "cloud.workers.ota_push"],
    "qadam serve": ["-m", "tools.cli", "serve"],
    "qadam ingest": ["-m", "tools.cli", "ingest"],
    "qadam migrate": ["-m", "tools.cli", "migrate"],
    "qadam demo": ["-m", "tools.cli", "demo"],
}
DOWN_DB = "postgresql://postgres@127.0.0.1:1/qadam"


def _clean_env(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("QADAM_")}
    return {**base, **env}


def _run_all(
    cmds: dict[str, list[str]], env: dict[str, str], timeout: float = 120
) -> dict[str, tuple[int, str]]:
    """Start every command at once (the machine is shared: one wait, not eleven); each one's
    exit code and stderr. A process still running at the timeout is a failure."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, argv in cmds.items()
    }
    out: dict[str, tuple[int, str]] = {}
    try:
        for name, p in procs.items():
            try:
                _, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
                raise AssertionError(f"{name} did not stop: it started anyway\n{err}") from None
            out[name] = (p.returncode, err)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def _one_line(name: str, rc_err: tuple[int, str]) -> str:
    rc, err = rc_err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, f"{name}:\n{err}"
    assert len(lines) == 1, f"{name}: not one line:\n{err}"
    return lines[0]


def test_every_entry_point_names_a_bad_setting_in_one_line_and_exits_2() -> None:
    got = _run_all(ENTRY_POINTS, _clean_env(QADAM_MQTT_PORT="abc"))
    for name, (rc, err) in got.items():
        line = _one_line(name, (rc, err))
        assert line == "qadam: QADAM_MQTT_PORT: 'abc' is not an integer (set a port 1-65535)", name
        assert rc == 2, f"{name}: exit {rc}"


def test_a_push_key_without_subject_is_one_line_naming_both_variables(tmp_path: Path) -> None:
    key = tmp_path / "vapid.pem"
    key.write_text("not a key")
    cmds = {k: ENTRY_POINTS[k] for k in ("python -m cloud.workers.outbox", "qadam serve")}
    got = _run_all(cmds, _clean_env(QADAM_PUSH_VAPID_KEY_FILE=str(key)))
    for name, (rc, err) in got.items():
        line = _one_line(name, (rc, err))
        assert line.startswith("qadam: QADAM_PUSH_VAPID_KEY_FILE needs QADAM_PUSH_VAPID_SUBJECT")
        assert rc == 2, f"{name}: exit {rc}"


def test_an_unreachable_database_is_one_line_and_exit_3(insecure_dev_env: dict[str, str]) -> None:
    names = [
        "python -m cloud.api",
        "python -m cloud.ingest",
        "python -m cloud.db.migrate",
        "python -m cloud.workers.outbox",
        "python -m cloud.workers.reports",
        "qadam migrate",
    ]
    env = _clean_env(QADAM_DATABASE_URL=DOWN_DB, **insecure_dev_env)
    got = _run_all({k: ENTRY_POINTS[k] for k in names}, env)
    for name, (rc, err) in got.items():
        # the insecure start logs its banner first; the reason is the last line
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err, f"{name}:\n{err}"
        assert lines and lines[-1].startswith(
            "qadam: database postgres@127.0.0.1:1/qadam is unreachable ("
        ), f"{name}:\n{err}"
        assert lines[-1].endswith("check QADAM_DATABASE_URL and that PostgreSQL is running")
        assert rc == 3, f"{name}: exit {rc}"


def test_a_malformed_database_url_is_one_line_and_exit_2() -> None:
    got = _run_all(
        {"qadam migrate": ENTRY_POINTS["qadam migrate"]},
        _clean_env(QADAM_DATABASE_URL="nonsense"),
    )
    line = _one_line("qadam migrate", got["qadam migrate"])
    assert line.startswith("qadam: QADAM_DATABASE_URL: not a PostgreSQL connection string")
    assert got["qadam migrate"][0] == 2


def test_production_starts_refuse_what_is_open_without_insecure_dev(
    database_url: str, mqtt_addr: tuple[str, int]
) -> None:
    """Against this machine's Mosquitto, which lets anonymous clients in: each refusal is one line
    naming every hole and the flag; nothing runs."""
    base = dict(
        QADAM_DATABASE_URL=database_url,
        QADAM_MQTT_HOST=mqtt_addr[0],
        QADAM_MQTT_PORT=str(mqtt_addr[1]),
    )
    cmds = {
        "serve, auth off": ["-m", "tools.cli", "serve"],
        "ingest, no account": ["-m", "tools.cli", "ingest"],
        "python -m cloud.ingest, board account": ["-m", "cloud.ingest"],
        "whitelist push, no account": ["-m", "cloud.workers.whitelist_push"],
        "balance push, no account": ["-m", "cloud.workers.balance_push"],
        "command push, no account": ["-m", "cloud.workers.command_push"],
        "ota push, no account": ["-m", "cloud.workers.ota_push"],
    }
    envs = {
        "serve, auth off": _clean_env(**base, QADAM_AUTH_REQUIRED="0"),
        "python -m cloud.ingest, board account": _clean_env(
            **base, QADAM_MQTT_USER="board.gate-1", QADAM_MQTT_PASSWORD="x"
        ),
    }
    got: dict[str, tuple[int, str]] = {}
    for name, argv in cmds.items():
        env = envs.get(name, _clean_env(**base))
        got.update(_run_all({name: argv}, env))
    where = f"the broker at {mqtt_addr[0]}:{mqtt_addr[1]} accepts anonymous clients"
    expect = {
        "serve, auth off": ["authentication is off (QADAM_AUTH_REQUIRED=0)", "QADAM_MQTT_DYNSEC=0"],
        "ingest, no account": ["no broker account (QADAM_MQTT_USER unset)"],
        "python -m cloud.ingest, board account": ["'board.gate-1' (QADAM_MQTT_USER) has a board's"],
        "whitelist push, no account": ["no broker account (QADAM_MQTT_USER unset)"],
        "balance push, no account": ["no broker account (QADAM_MQTT_USER unset)"],
        "command push, no account": ["no broker account (QADAM_MQTT_USER unset)"],
        "ota push, no account": ["no broker account (QADAM_MQTT_USER unset)"],
    }
    for name, (rc, err) in got.items():
        line = _one_line(name, (rc, err))
        assert line.startswith("qadam: refusing to start "), f"{name}: {line}"
        for part in [*expect[name], where, "--insecure-dev / QADAM_INSECURE_DEV=1"]:
            assert part in line, f"{name}: {part!r} not in {line}"
        assert rc == 2, f"{name}: exit {rc}"


@pytest.fixture
def closed_broker(tmp_path: Path) -> Iterator[int]:
    """A Mosquitto of our own that refuses anonymous clients; one account: qadam-ingest/secret."""
    port = _free_port()
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "pw"), "qadam-ingest", "secret"],
        check=True,
        capture_output=True,
    )
    (tmp_path / "m.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {tmp_path}/pw\n"
        "user root\n"
    )
    proc = subprocess.Popen(
        ["/usr/sbin/mosquitto", "-c", str(tmp_path / "m.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(proc, port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_broker_probe_tells_open_from_closed_and_unreachable(
    closed_broker: int, mqtt_addr: tuple[str, int]
) -> None:
    from cloud.startup import broker_accepts_anonymous

    assert broker_accepts_anonymous(*mqtt_addr) is True  # this machine's Mosquitto
    assert broker_accepts_anonymous("127.0.0.1", closed_broker) is False
    assert broker_accepts_anonymous("127.0.0.1", _free_port(), timeout_s=1) is None


def test_a_closed_production_start_needs_no_flag(
    database_url: str, topic_prefix: str, closed_broker: int
) -> None:
    """The ingest on its own account at a broker without anonymous access starts (no flag, no
    banner) and subscribes."""
    client_id = f"ingest-{topic_prefix}"
    proc = Proc(
        "cloud.ingest",
        {
            "QADAM_DATABASE_URL": database_url,
            "QADAM_MQTT_HOST": "127.0.0.1",
            "QADAM_MQTT_PORT": str(closed_broker),
            "QADAM_MQTT_USER": "qadam-ingest",
            "QADAM_MQTT_PASSWORD": "secret",
            "QADAM_TOPIC_PREFIX": topic_prefix,
            "QADAM_INGEST_CLIENT_ID": client_id,
        },
    )
    try:
        deadline = time.monotonic() + 60
        msgs: list[str] = []
        while "mqtt subscribed" not in msgs and time.monotonic() < deadline:
            assert proc.p.poll() is None, "ingest exited:\n" + proc.output()
            msgs = [json.loads(line)["msg"] for line in list(proc.lines) if line.startswith("{")]
            time.sleep(0.05)
        assert "mqtt subscribed" in msgs, "ingest never subscribed:\n" + proc.output()
        assert not any(m.startswith("OPEN:") for m in msgs), msgs
        assert proc.sigint() == 0, proc.output()
    finally:
        proc.kill()


def test_the_insecure_dev_flag_lets_an_open_start_past_the_refusal(
    mqtt_addr: tuple[str, int],
) -> None:
    """The flag (not the env var) on each command line: the open start goes on, with the banner,
    and stops at the next check (here: an unreachable database, exit 3)."""
    cmds = {
        "qadam serve --insecure-dev": ["-m", "tools.cli", "serve", "--insecure-dev"],
        "qadam ingest --insecure-dev": ["-m", "tools.cli", "ingest", "--insecure-dev"],
        "python -m cloud.api --insecure-dev": ["-m", "cloud.api", "--insecure-dev"],
        "python -m cloud.ingest --insecure-dev": ["-m", "cloud.ingest", "--insecure-dev"],
        "whitelist_push --insecure-dev": ["-m", "cloud.workers.whitelist_push", "--insecure-dev"],
    }
    env = _clean_env(
        QADAM_DATABASE_URL=DOWN_DB,
        QADAM_MQTT_HOST=mqtt_addr[0],
        QADAM_MQTT_PORT=str(mqtt_addr[1]),
        QADAM_AUTH_REQUIRED="0",
    )
    for name, (rc, err) in _run_all(cmds, env).items():
        assert "INSECURE DEVELOPMENT START" in err, f"{name}:\n{err}"
        assert "accepts anonymous clients" in err, f"{name}:\n{err}"
        assert "is unreachable" in err.splitlines()[-1], f"{name}:\n{err}"
        assert rc == 3, f"{name}: exit {rc}"
