"""`qadam demo` on a "bare machine": nothing listens on the ports it is given, so it starts the
embedded PostgreSQL and broker, runs the cloud and a simulated school, and on Ctrl-C stops all of
it and nothing else."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from tools.services import port_open

# The three readers of the demo's school ("demo-school" in tools/demo.py, readers in
# simulator/school.py).
DEMO_DEVICES = ("demo-school-entrance-in", "demo-school-entrance-out", "demo-school-canteen-1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sign_in(base: str, email: str, password: str) -> None:
    """The console's sign-in as a browser posts it: answered with a session cookie."""
    import http.client
    import urllib.parse

    host = base.split("://", 1)[1]
    conn = http.client.HTTPConnection(host, timeout=10)
    body = urllib.parse.urlencode({"email": email, "password": password, "next": "/today"})
    conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded",
                                          "Sec-Fetch-Site": "same-origin"})  # fmt: skip
    r = conn.getresponse()
    assert r.status == 303 and r.getheader("Location") == "/today", r.status
    assert "qadam_session=" in (r.getheader("Set-Cookie") or "")
    conn.close()


def _stat(pid: int) -> tuple[int, str, str, int] | None:
    """(ppid, comm, state, start time) of a live process, None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    return int(rest[1]), comm, rest[0], int(rest[19])


def _descendants(root: int) -> dict[int, tuple[str, int]]:
    """Every process below root: pid -> (comm, start time); the start time tells a pid reused
    by another process later from the one seen now."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            children.setdefault(st[0], []).append(int(name))
            info[int(name)] = (st[1], st[3])
    found: dict[int, tuple[str, int]] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child in info and child not in found:
                found[child] = info[child]
                todo.append(child)
    return found


def _survivors(procs: dict[int, tuple[str, int]]) -> list[str]:
    out = []
    for pid, (comm, start) in procs.items():
        st = _stat(pid)
        if st is not None and st[3] == start and st[2] != "Z":
            out.append(f"{pid} {comm}")
    return out


def _total(base: str, query: str) -> int:
    with urllib.request.urlopen(f"{base}/api/v1/events?limit=1{query}") as resp:
        return int(json.load(resp)["total"])


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
        # the demo is open on purpose and says so, naming what is open (D24-E)
        said = "".join(lines)
        assert "DEMO MODE: INSECURE, for this machine only" in said, said
        assert "authentication is off (QADAM_AUTH_REQUIRED=0)" in said, said
        base = url.rsplit("/", 1)[0]
        assert port_open("127.0.0.1", pg) and port_open("127.0.0.1", mqtt)
        # the console is behind sign-in even here: the demo prints its admin's password
        line = proc.stdout.readline()
        lines.append(line)
        assert line.startswith("Sign in as admin@demo-school.local with "), line
        _sign_in(base, "admin@demo-school.local", line.split(" with ", 1)[1].split()[0])

        total = 0
        while total < 5 and time.monotonic() < deadline:
            total = _total(base, "")
            time.sleep(0.5)
        assert total >= 5, "the demo's taps did not reach the database"
        # what the live page asks for: the last 24 hours (the boards' clocks are synced)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 24 * 3600))
        assert _total(base, f"&since={since}") >= total  # every tap seen so far is recent
        # Every reader of the school taps and its events are stored: in, out and canteen.
        per_device = dict.fromkeys(DEMO_DEVICES, 0)
        while min(per_device.values()) < 1 and time.monotonic() < deadline:
            per_device = {d: _total(base, f"&device={d}") for d in DEMO_DEVICES}
            time.sleep(0.5)
        assert min(per_device.values()) >= 1, per_device
        with urllib.request.urlopen(url) as resp:
            assert resp.status == 200
    finally:
        started = _descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines.append(out or "")
    assert proc.returncode == 0, "".join(lines)
    # It had started the boards (one `micropython` VM per reader), and nothing it started
    # outlives it: no board, no embedded PostgreSQL or broker process, no helper.
    assert sum(comm == "micropython" for comm, _ in started.values()) == len(DEMO_DEVICES), started
    assert _survivors(started) == [], "still running after the demo stopped"
    assert not port_open("127.0.0.1", pg), "embedded PostgreSQL still running"
    assert not port_open("127.0.0.1", mqtt), "embedded broker still running"
    assert not port_open("127.0.0.1", http), "web server still running"
    # The machine's own services were not touched.
    assert port_open("127.0.0.1", 5432) and port_open("127.0.0.1", 1883)
