"""An ingest writer whose database stops answering mid-flush (a frozen primary, D29-D): the
stall watchdog (cloud/ingest/stall.py) cuts the connection after ingest_db_stall_s and the batch
is retried on a new one, stored once and acked. The database sits behind a TCP relay the test
can freeze: the relay keeps its sockets open and stops passing bytes, as a hung machine's kernel
keeps a connection alive with nobody answering."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import psycopg
import pytest
from cloud_helpers import Board, Seed, batch_doc, dumps, topic

from cloud.ingest.service import Ingest
from cloud.settings import Settings


class FreezableRelay:
    """127.0.0.1:port -> the database; ``freeze()`` stops every connection open now from
    passing bytes (new connections pass)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.frozen: list[threading.Event] = []  # one per connection: set = stop passing
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        for flag in self.frozen:
            flag.set()

    def close(self) -> None:
        self.listener.close()
        for s in self._socks:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            flag = threading.Event()
            self.frozen.append(flag)
            self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pass, args=(a, b, flag), daemon=True).start()

    @staticmethod
    def _pass(src: socket.socket, dst: socket.socket, frozen: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if frozen.is_set():
                    return  # hold the socket open, pass nothing more
                dst.sendall(data)
        except OSError:
            pass
        if not frozen.is_set():
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


@pytest.fixture
def relay(settings: Settings) -> Iterator[FreezableRelay]:
    params = psycopg.conninfo.conninfo_to_dict(settings.database_url)
    r = FreezableRelay(str(params["host"]), int(params["port"] or 5432))
    yield r
    r.close()


def test_a_frozen_database_is_cut_and_the_batch_retried(
    settings: Settings, seed: Seed, relay: FreezableRelay, caplog: pytest.LogCaptureFixture
) -> None:
    dbname = settings.database_url.rsplit("/", 1)[1]
    url = f"postgresql://postgres@127.0.0.1:{relay.port}/{dbname}"
    s = settings.model_copy(update={"database_url": url, "ingest_db_stall_s": 2.0})
    p = s.topic_prefix
    board = Board(s.mqtt_host, s.mqtt_port, p)
    ing = Ingest(s)
    caplog.set_level(logging.WARNING, logger="qadam.ingest")
    try:
        ing.start()
        assert ing.wait_ready(10)
        board.publish(topic(p), dumps(batch_doc(seqs=[1, 2])))
        _, ack = board.next_ack()
        assert (ack["first"], ack["last"]) == (1, 2)
        relay.freeze()  # the writer's connection now hangs, open, with nobody answering
        board.publish(topic(p), dumps(batch_doc(seqs=[3, 4])))
        assert board.no_ack(1.0)
        _, ack = board.next_ack(timeout=15)  # cut after 2 s, retried on a new connection
        assert (ack["first"], ack["last"]) == (3, 4)
        assert any(r.getMessage().startswith("ingest db stalled") for r in caplog.records)
        with psycopg.connect(settings.database_url) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone()
        assert row == (4, 4)
    finally:
        ing.stop()
        board.close()
