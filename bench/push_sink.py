"""A push service endpoint for benchmarks, run as its own process (``python -m bench.push_sink``):
HTTP/1.1 with keep-alive on a free loopback port, answers every POST ``201 Created`` with an
empty body at once, and remembers when each request arrived and its body.

It prints ``PORT <n>`` when it listens. On SIGTERM, or on a line on stdin, it writes one JSON line
per received request to the file named by ``--out`` (``{"path", "at", "body"}``, body in
base64, ``at`` from ``time.monotonic()``, which on Linux is the same clock in every process)
and exits. Checking the requests (VAPID signature, decryption) happens after the run, in the
benchmark, so the endpoint's own CPU stays small and timing a push measures the sender.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
import time


class _Sink:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float, bytes]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = 0
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection" and value.strip().lower() == "close":
                        close = True
                body = await reader.readexactly(length) if length else b""
                self.seen.append((path, time.monotonic(), body))
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def dump(self, out: str) -> None:
        with open(out, "w") as f:
            for path, at, body in self.seen:
                line = {"path": path, "at": at, "body": base64.b64encode(body).decode()}
                f.write(json.dumps(line) + "\n")


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
