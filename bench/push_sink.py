"""A push service endpoint for benchmarks, run as its own process (``python -m bench.push_sink``):
HTTP/1.1 with keep-alive on a free loopback port, answers every POST ``201 Created`` with an
empty body at once, and remembers when each request arrived and its body.

It prints ``PORT <n>`` when it listens. On SIGTERM, or on a line on stdin, it writes one JSON line
per received request to the file named by ``--out`` (``{"path", "at", "headers", "body"}``,
body in base64, ``at`` from ``time.perf_counter()``: CLOCK_MONOTONIC on Linux, the same clock in
every process, so the benchmark compares it with its own)
and exits. Checking the requests (VAPID signature, decryption) happens after the run, in the
benchmark, so the endpoint's own CPU stays small and timing a push measures the sender.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class _Sink:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float, dict[str, str], bytes]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip()] = value.strip()
                length = int(headers.get("Content-Length", "0"))
                close = headers.get("Connection", "").lower() == "close"
                body = await reader.readexactly(length) if length else b""
                self.seen.append((path, time.perf_counter(), headers, body))
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def dump(self, out: str) -> None:
        with open(out, "w") as f:
            for path, at, headers, body in self.seen:
                body64 = base64.b64encode(body).decode()
                line = {"path": path, "at": at, "headers": headers, "body": body64}
                f.write(json.dumps(line) + "\n")


class SinkProcess:
    """The endpoint as a child process of the benchmark; ``received()`` ends it and reads its
    record."""

    def __init__(self) -> None:
        self.out = tempfile.NamedTemporaryFile(prefix="qadam-push-sink-", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.push_sink", "--out", self.out.name],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"push sink did not start: {line!r}")
        self.port = int(line.split()[1])

    def received(self) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("done\n")
        self.proc.stdin.flush()
        self.proc.wait(30)
        lines = Path(self.out.name).read_text().splitlines()
        Path(self.out.name).unlink()
        return [json.loads(line) for line in lines]


async def _main(out: str) -> None:
    sink = _Sink()
    server = await asyncio.start_server(sink.serve, "127.0.0.1", 0, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: done.done() or done.set_result(None))
    loop.add_reader(sys.stdin, lambda: done.done() or done.set_result(None))
    await done
    server.close()
    sink.dump(out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.push_sink")
    p.add_argument("--out", required=True)
    asyncio.run(_main(p.parse_args().out))
