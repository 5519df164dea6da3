"""The outbox handler for kind ``social_wallet``: sends a meal record through a ``Connector``
and keeps the ledger (``sw_deliveries``) in step, in the outbox worker's transactions.

Ledger states: pending (enqueued) -> sent (claimed for an attempt; the outcome may be unknown)
-> accepted (reference) | rejected (reasons), or dead (the outbox gave up; reconciliation may
still find it accepted). accepted and rejected are final and never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cloud.outbox.contract import BaseHandler, Conn, Delivered, Fail, OutboxItem, Outcome, Retry
from cloud.socialwallet.connector import (
    Accepted,
    Connector,
    MealRecord,
    Rejected,
    TransientError,
)

KIND = "social_wallet"
# the contract's answer to a key already used for a different body (docs/social-wallet.md)
REUSED = "idempotency_key_reused"


def reasons_json(r: Rejected) -> str:
    return json.dumps([{"code": x.code, "message": x.message} for x in r.reasons])


def mark_final(conn: Conn, key: str, answer: Accepted | Rejected) -> int:
    """Record a final answer (from a delivery or from reconciliation). Final states stay."""
    if isinstance(answer, Accepted):
        cur = conn.execute(
            "UPDATE sw_deliveries SET state = 'accepted', reference = %s, last_error = NULL,"
            " confirmed_at = now(), updated_at = now()"
            " WHERE idempotency_key = %s AND state NOT IN ('accepted', 'rejected')",
            (answer.reference, key),
        )
    else:
        cur = conn.execute(
            "UPDATE sw_deliveries SET state = 'rejected', reasons = %s::jsonb,"
            " last_error = NULL, confirmed_at = now(), updated_at = now()"
            " WHERE idempotency_key = %s AND state NOT IN ('accepted', 'rejected')",
            (reasons_json(answer), key),
        )
    return cur.rowcount


class SocialWalletHandler(BaseHandler):
    kind = KIND

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def claimed(self, conn: Conn, items: Sequence[OutboxItem]) -> None:
        for it in items:
            conn.execute(
                "UPDATE sw_deliveries SET state = 'sent', attempts = %s,"
                " sent_at = coalesce(sent_at, now()), updated_at = now()"
                " WHERE idempotency_key = %s AND state IN ('pending', 'sent')",
                (it.attempts, it.idempotency_key),
            )

    def deliver(self, item: OutboxItem) -> Outcome:
        try:
            record = MealRecord.from_payload(item.payload)
        except ValueError as e:
            return Fail(f"bad payload: {e}")
        try:
            answer = self.connector.submit(record, item.idempotency_key)
            if isinstance(answer, Rejected) and any(r.code == REUSED for r in answer.reasons):
                answer = self._already_there(item.idempotency_key, answer)
        except TransientError as e:
            return Retry(str(e))
        return Delivered(answer)  # accepted or rejected: a final answer either way

    def _already_there(self, key: str, answer: Rejected) -> Accepted | Rejected:
        """The receiver holds a record under this key with another body: a resend (rebuilt
        after the data was fixed, D24-F) of a record that had arrived after all. The record it
        holds is the one that counts: accepted with its original reference, never a second."""
        known = self.connector.status(key)
        if isinstance(known, Accepted):
            return Accepted(known.reference, duplicate=True)
        return answer

    def record(self, conn: Conn, item: OutboxItem, outcome: Outcome, dead: bool) -> None:
        key = item.idempotency_key
        if isinstance(outcome, Delivered):
            answer: Any = outcome.data
            assert isinstance(answer, Accepted | Rejected)
            mark_final(conn, key, answer)
            return
        conn.execute(
            "UPDATE sw_deliveries SET state = CASE WHEN %s THEN 'dead' ELSE state END,"
            " last_error = %s, updated_at = now()"
            " WHERE idempotency_key = %s AND state IN ('pending', 'sent')",
            (dead, outcome.error[:2000], key),
        )


def connector_from_settings(settings: Any) -> Connector:
    from cloud.socialwallet.http import HttpConnector

    return HttpConnector(
        settings.socialwallet_url,
        token=settings.socialwallet_token,
        timeout_s=settings.socialwallet_timeout_s,
    )
