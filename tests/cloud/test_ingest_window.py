"""A board's window of batches in flight (protocol.md "Ack", D25-L) as the ingest's writer sees
it: several batches of one board in one flush, a batch sent again after its ack was lost and
arriving after later ones. The board relies on one ack per batch for exactly its range, in any
order, with nothing stored twice and no retransmission taken for a reused identity."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from cloud_helpers import Seed, batch_doc, dumps, topic

from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import Ack, write

pytestmark = pytest.mark.usefixtures("write_path")


def _batch(seqs: range) -> Batch:
    got = decode(topic("qadam", "gate-1"), dumps(batch_doc(seqs=seqs)))
    assert isinstance(got, Batch), got
    return got


@pytest.fixture
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def test_a_window_is_acked_batch_by_batch_in_any_order(conn: Any, seed: Seed) -> None:
    b1, b2, b3, b4 = (_batch(range(f, f + 32)) for f in (1, 33, 65, 97))
    r1 = write(conn, [b1, b2, b3])  # the first three of the window in one flush
    assert r1.acks == [Ack("gate-1", 7, 1, 32), Ack("gate-1", 7, 33, 64), Ack("gate-1", 7, 65, 96)]
    # The ack of 33..64 was lost: the board sends it again (the same bytes) after 97..128.
    r2 = write(conn, [b4, b2])
    assert r2.acks == [Ack("gate-1", 7, 97, 128), Ack("gate-1", 7, 33, 64)]
    assert (r2.inserted, r2.duplicates, r2.quarantined, r2.reused) == (32, 32, 0, 0)
    seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
    assert seqs == list(range(1, 129))
