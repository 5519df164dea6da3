"""A local SNTP server for board tests (UDP on 127.0.0.1): answers with the host's time plus
``skew`` seconds. Changing ``skew`` moves a board's clock at its next sync: a test's "next day"
without waiting a day. It answers only while ``answer`` is set (``answering=False``: a server
that is down until the test sets it); ``replies`` counts the answers sent.
``wait_applied(skew)`` returns once the board has asked again after an answer with that skew (it
asks only after handling the answer before, firmware/net/ntp.py)."""

from __future__ import annotations

import socket
import struct
import threading
import time

NTP_DELTA = 2208988800  # 1900-01-01 -> 1970-01-01


class NtpServer:
    def __init__(self, skew: int = 0, answering: bool = True) -> None:
        self.skew = skew
        self.answer = threading.Event()
        if answering:
            self.answer.set()
        self.sent: list[int] = []  # the skew of each answer sent
        self._cond = threading.Condition()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(64)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 48 or (data[0] & 7) != 3 or not self.answer.is_set():
                continue  # only client requests (mode 3), only while answering
            skew = self.skew
            pkt = bytearray(48)
            pkt[0] = 0x24  # LI 0, version 4, mode 4 (server)
            pkt[1] = 2  # stratum
            struct.pack_into("!I", pkt, 40, int(time.time()) + skew + NTP_DELTA)
            self.sock.sendto(bytes(pkt), addr)
            with self._cond:
                self.sent.append(skew)
                self._cond.notify_all()

    @property
    def replies(self) -> int:
        return len(self.sent)

    def wait_applied(self, skew: int, timeout: float = 30.0) -> None:
        """Until two answers with ``skew`` went out: the board handled the first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.sent.count(skew) < 2:
                left = deadline - time.monotonic()
                assert left > 0, f"no board asked twice for the time with skew {skew}"
                self._cond.wait(left)

    def close(self) -> None:
        self._stop = True
        self._t.join(2)
        self.sock.close()
