"""NetProxy: forwards bytes, cuts (reset + refuse) and slows a link, then restores it."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from simulator.netproxy import NetProxy


@pytest.fixture
def echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return

            def echo(c=c):
                try:
                    while data := c.recv(4096):
                        c.sendall(data)
                except OSError:
                    pass
                c.close()

            threading.Thread(target=echo, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()
    stop.set()
    srv.close()


def _roundtrip(port: int, data: bytes = b"hello") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return got


def test_forward_cut_slow_restore(echo_server):
    with NetProxy(echo_server) as proxy:
        assert _roundtrip(proxy.port) == b"hello"
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
        live.sendall(b"x")
        assert live.recv(10) == b"x"

        proxy.cut()
        assert proxy.state == "cut"
        try:  # the open connection is reset
            data = live.recv(10)
        except OSError:
            data = b""
        assert data == b""
        live.close()
        try:  # new connections are refused (accepted and reset at once)
            data = _roundtrip(proxy.port)
        except OSError:
            data = b""
        assert data == b""
        assert proxy.stats.refused >= 1

        proxy.restore()
        proxy.slow(delay=0.2)
        assert proxy.state == "slow"
        t0 = time.monotonic()
        assert _roundtrip(proxy.port) == b"hello"
        assert time.monotonic() - t0 >= 0.4  # delayed both ways

        proxy.restore()
        proxy.slow(rate=20_000)
        t0 = time.monotonic()
        assert _roundtrip(proxy.port, b"z" * 10_000) == b"z" * 10_000
        assert time.monotonic() - t0 >= 0.5
        proxy.restore()
        assert proxy.state == "up"
        assert proxy.stats.bytes_up >= 10_000
