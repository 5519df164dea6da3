"""The events list's cursor: what encode gives decodes back; anything else is a ValueError."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.api.event_cursor import Cursor, decode

devices = st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True)
times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@settings(max_examples=500)
@given(times, st.integers(1, 2**63 - 1), devices, st.integers(0, 2**63 - 1))
def test_round_trip(occurred_at: datetime, seq: int, device: str, boot: int) -> None:
    c = Cursor(occurred_at, seq, device, boot)
    assert decode(c.encode()) == c


@settings(max_examples=2000)
@given(st.one_of(st.text(max_size=220), st.binary(max_size=150).map(lambda b: b.hex())))
def test_anything_else_decodes_or_raises_value_error(value: str) -> None:
    try:
        c = decode(value)
    except ValueError:
        return
    assert decode(c.encode()) == c
