"""A TCP proxy between one board and the broker, to break the network on purpose.

A board's device.json points at the proxy's port instead of the broker's. The proxy forwards
bytes both ways and can

- ``cut()``: close every open connection (with a reset, as a dead link looks to the board) and
  refuse new ones until ``restore()``;
- ``slow(delay=, rate=)``: hold every chunk ``delay`` seconds and/or throttle each direction to
  ``rate`` bytes per second, until ``restore()``.

Threads, one listener and two pumps per connection; nothing here knows MQTT.

    proxy = NetProxy(("127.0.0.1", 1883)).start()
    config.mqtt_port = proxy.port
    proxy.cut(); ...; proxy.restore()
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    cuts: int = 0
    bytes_up: int = 0  # board -> broker
    bytes_down: int = 0  # broker -> board


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: the peer sees a broken link, not a polite goodbye."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class NetProxy:
    def __init__(
        self, upstream: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0, name: str = ""
    ) -> None:
        self.upstream = upstream
        self.name = name or f"proxy->{upstream[0]}:{upstream[1]}"
        self.stats = ProxyStats()
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind((host, port))
        self._listen.listen(64)
        self.host, self.port = self._listen.getsockname()[:2]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut = False
        self.delay = 0.0
        self.rate = 0.0  # bytes/s per direction; 0 = unlimited
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self._cut:
            return "cut"
        return "slow" if (self.delay or self.rate) else "up"

    def start(self) -> NetProxy:
        self._thread = threading.Thread(target=self._accept, name=self.name, daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        with self._lock:
            self._cut = True
            pairs, self._pairs = self._pairs, []
            self.stats.cuts += 1
        for a, b in pairs:
            _reset(a)
            _reset(b)

    def slow(self, delay: float = 0.0, rate: float = 0.0) -> None:
        """Delay every chunk by `delay` seconds and/or cap each direction at `rate` bytes/s."""
        self.delay, self.rate = float(delay), float(rate)

    def restore(self) -> None:
        self._cut = False
        self.delay = self.rate = 0.0

    def close(self) -> None:
        self._closed.set()
        try:
            self._listen.close()
        except OSError:
            pass
        self.cut()
        self.stats.cuts -= 1  # closing is not an outage
        if self._thread is not None:
            self._thread.join(2)

    def __enter__(self) -> NetProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- work -----------------------------------------------------------------------------------
    def _accept(self) -> None:
        self._listen.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self._listen.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut:
                self.stats.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self.stats.refused += 1
                _reset(client)
                continue
            server.settimeout(None)
            client.settimeout(None)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._cut:  # cut while we were connecting
                    _reset(client)
                    _reset(server)
                    continue
                self._pairs.append((client, server))
                self.stats.connections += 1
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, up), name=f"{self.name}-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(4096 if not self.rate else max(1, min(4096, int(self.rate / 10))))
                if not data or self._cut:
                    break
                if self.delay:
                    time.sleep(self.delay)
                if self.rate:
                    time.sleep(len(data) / self.rate)
                if self._cut:
                    break
                dst.sendall(data)
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs = [p for p in self._pairs if src not in p]
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
