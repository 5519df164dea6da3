"""`qadam demo` on a "bare machine": nothing listens on the ports it is given, so it starts the
embedded PostgreSQL and broker, runs the cloud and a simulated school, and on Ctrl-C stops all of
it and nothing else."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from tools.services import port_open


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_starts_embedded_services_and_stops_only_them(shared_tmp):
    pg, mqtt, http = _free_port(), _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.cli",
            "demo",
            "--state-dir",
            str(shared_tmp),
            "--pg-port",
            str(pg),
            "--mqtt-port",
            str(mqtt),
            "--http-port",
            str(http),
            "--rate",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Open http://" in line:
                url = line.split("Open ", 1)[1].split()[0]
        assert url is not None, "demo never printed its URL:\n" + "".join(lines)
        assert url.endswith("/live")
        base = url.rsplit("/", 1)[0]
        assert port_open("127.0.0.1", pg) and port_open("127.0.0.1", mqtt)

        total = 0
        while total < 5 and time.monotonic() < deadline:
            with urllib.request.urlopen(base + "/api/v1/events?limit=5") as resp:
                total = json.load(resp)["total"]
            time.sleep(0.5)
        assert total >= 5, "the demo's taps did not reach the database"
        with urllib.request.urlopen(url) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines.append(out or "")
    assert proc.returncode == 0, "".join(lines)
    assert not port_open("127.0.0.1", pg), "embedded PostgreSQL still running"
    assert not port_open("127.0.0.1", mqtt), "embedded broker still running"
    assert not port_open("127.0.0.1", http), "web server still running"
    # The machine's own services were not touched.
    assert port_open("127.0.0.1", 5432) and port_open("127.0.0.1", 1883)
