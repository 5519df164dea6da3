"""A private Mosquitto as a school's deployment runs it (deploy/mosquitto): dynamic security (no
anonymous clients, one account per board, service accounts for the cloud) and a TLS listener for
the boards, serving a certificate of a CA made for the test (tests/tls_broker.py), plus a plain
listener on 127.0.0.1 for the cloud's own processes. ``tls_dynsec_mosquitto(dir)`` yields
``(tls_port, plain_port)``; its admin is ``tests.dynsec_broker.ADMIN`` / ``ADMIN_PW``; the CA is
``dir/ca.pem``; the log ``dir/mosquitto.log``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.dynsec_broker import ADMIN, ADMIN_PW, PLUGIN, free_port, wait_listening
from tests.tls_broker import make_pki


@contextmanager
def tls_dynsec_mosquitto(d: Path) -> Iterator[tuple[int, int]]:
    assert Path(PLUGIN).exists(), "mosquitto dynamic-security plugin missing"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "ca.pem").exists():
        make_pki(d)
    tls_port, plain_port = free_port(), free_port()
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", f"{d}/dynsec.json", ADMIN, ADMIN_PW],
                   check=True, capture_output=True)  # fmt: skip
    (d / "m.conf").write_text(
        f"per_listener_settings false\nallow_anonymous false\nplugin {PLUGIN}\n"
        f"plugin_opt_config_file {d}/dynsec.json\nuser root\n"
        f"log_dest file {d}/mosquitto.log\nconnection_messages true\n"
        f"listener {plain_port} 127.0.0.1\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {d}/ca.pem\ncertfile {d}/good.pem\nkeyfile {d}/good.key\n"
        "tls_version tlsv1.2\n"
    )
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(d / "m.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_listening(proc, tls_port)
        wait_listening(proc, plain_port)
        yield tls_port, plain_port
    finally:
        proc.terminate()
        proc.wait(10)
