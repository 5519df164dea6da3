"""A private Mosquitto with the dynamic-security plugin on a free port (tests that need broker
accounts and ACLs: provisioning, device deletion). Its admin is ``ADMIN`` / ``ADMIN_PW``."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
ADMIN, ADMIN_PW = "qadam-admin", "admin-pw-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout_s: float = 10) -> None:
    """Until the broker ``proc`` accepts TCP connections on ``port`` (it must not exit first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, "mosquitto exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)


@contextmanager
def dynsec_mosquitto(tmp: Path) -> Iterator[int]:
    """Start it in ``tmp`` (its log: ``tmp/mosquitto.log``); yield the port; stop it."""
    assert Path(PLUGIN).exists(), "mosquitto dynamic-security plugin missing"
    port = free_port()
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", f"{tmp}/dynsec.json", ADMIN, ADMIN_PW],
                   check=True, capture_output=True)  # fmt: skip
    (tmp / "m.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\nplugin {PLUGIN}\n"
        f"plugin_opt_config_file {tmp}/dynsec.json\nuser root\n"
        f"log_dest file {tmp}/mosquitto.log\nconnection_messages true\n"
    )
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(tmp / "m.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_listening(proc, port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
