"""fuzz_decoder: the decoder under hypothesis for 100,000 examples per strategy.

Three strategies: arbitrary bytes on arbitrary topics, valid batches with one field replaced by
an arbitrary JSON value, and the byte-level mutants of tests/cloud/test_ingest_fuzz.py's seeds.
Each example must decode to a Batch or a Reject without raising. (The default test suite runs
100,000 mutants in a few seconds; this is the long run.)
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.common import Row
from cloud.ingest import decode as d
from cloud.ingest.decode import Batch, Reject, decode

EXAMPLES = 100_000
TOPIC = "qadam/v1/dev/gate-1/events"
HSET = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids,
                                                               max_size=5),
    max_leaves=20,
)  # fmt: skip
EVENT = {"boot": 7, "seq": 1, "t": 1_760_000_001, "sync": 1, "up": 1000, "kind": "tap",
         "reader": "in", "card": "0123456789abcdef", "result": "granted", "reason": "ok"}


RAN = {"n": 0}


def check(result: object) -> None:
    RAN["n"] += 1
    assert isinstance(result, Batch | Reject)
    if isinstance(result, Reject):
        assert result.reason in d.REASONS
    else:
        for e in result.events:
            assert 0 <= e.boot < 2**63 and 1 <= e.seq < 2**63
            for s in (e.kind, e.reason):
                s.encode("utf-8")
                assert "\x00" not in s


@HSET
@given(topic=st.text(max_size=60), payload=st.binary(max_size=400))
def arbitrary(topic: str, payload: bytes) -> None:
    check(decode(topic, payload))


@HSET
@given(path=st.integers(0, 10_000), value=json_values, n=st.integers(1, 4))
def replaced(path: int, value: Any, n: int) -> None:
    doc: dict[str, Any] = {"v": 1, "dev": "gate-1", "boot": 7,
                           "events": [dict(EVENT, seq=s) for s in range(1, n + 1)]}  # fmt: skip
    keys = ["v", "dev", "boot", "events", "extra"]
    ev_keys = list(EVENT) + ["x"]
    if path % 2:
        doc[keys[path % len(keys)]] = value
    else:
        doc["events"][path % n][ev_keys[path % len(ev_keys)]] = value
    check(decode(TOPIC, json.dumps(doc).encode("utf-8", "surrogatepass")))


@HSET
@given(seed=st.integers(0, 2**64), n=st.integers(1, 32))
def mutants(seed: int, n: int) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cloud"))
    from test_ingest_fuzz import mutate

    doc = {"v": 1, "dev": "gate-1", "boot": 7,
           "events": [dict(EVENT, seq=s) for s in range(1, n + 1)]}  # fmt: skip
    check(decode(TOPIC, mutate(json.dumps(doc).encode(), random.Random(seed))))


def run(repeat: int = 1) -> list[Row]:
    rows = []
    for name, fn in (("arbitrary bytes", arbitrary), ("one field replaced", replaced),
                     ("byte-level mutants", mutants)):  # fmt: skip
        RAN["n"] = 0
        t0 = time.perf_counter()
        fn()
        el = time.perf_counter() - t0
        print(f"{name}: {RAN['n']:,} examples in {el:.0f} s, no failure", flush=True)
        rows.append(Row(f"fuzz {name}: examples run without a failure", RAN["n"], "examples",
                        goal=f">= {EXAMPLES:,}"))  # fmt: skip
        rows.append(Row(f"fuzz {name}: run time", el, "s", goal="informational"))
    return rows
