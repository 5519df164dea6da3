"""What an outbox handler is: the item it is given, the outcomes it answers with, the hooks the
runner (cloud/workers/outbox.py) calls. Handlers (push, Social Wallet, e-mail) import this module
and never the runner, so the runner can import them without a cycle."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg

log = logging.getLogger("qadam.outbox")

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Delivered:
    data: Any = None  # handed to Handler.record


@dataclass(frozen=True)
class Retry:
    error: str
    data: Any = None


@dataclass(frozen=True)
class Fail:
    """Permanent: no retry can succeed (e.g. a malformed payload). Dead-lettered at once."""

    error: str
    data: Any = None


Outcome = Delivered | Retry | Fail


@dataclass(frozen=True)
class OutboxItem:
    id: int
    kind: str
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int  # including this one
    created_at: datetime


class Handler(Protocol):
    kind: str

    def claimed(self, conn: Conn, items: Sequence[OutboxItem]) -> None:
        """In the claim transaction, before anything is sent (e.g. mark ledger rows 'sent')."""

    def deliver(self, item: OutboxItem) -> Outcome:
        """Send one item (no transaction is open). Must pass ``item.idempotency_key`` on."""

    def record(self, conn: Conn, item: OutboxItem, outcome: Outcome, dead: bool) -> None:
        """In the transaction that stores the outcome; ``dead``: the row became a dead letter."""


class BaseHandler:
    kind = ""

    def claimed(self, conn: Conn, items: Sequence[OutboxItem]) -> None:
        return None

    def deliver(self, item: OutboxItem) -> Outcome:
        raise NotImplementedError

    def record(self, conn: Conn, item: OutboxItem, outcome: Outcome, dead: bool) -> None:
        return None


def guarded(deliver: Any, item: OutboxItem) -> Outcome:
    """``deliver(item)``; an exception (a handler bug, an unexpected error) is a Retry."""
    try:
        outcome: Outcome = deliver(item)
    except Exception as e:
        log.exception("outbox handler raised kind=%s key=%s", item.kind, item.idempotency_key)
        return Retry(f"{type(e).__name__}: {e}")
    return outcome
