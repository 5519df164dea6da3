"""Queueing an e-mail: one ``email_messages`` row and its outbox row (kind ``email``), in the
caller's transaction, so a mail goes out only if what caused it commits (invariant 6). The
outbox worker delivers it (cloud/mail/smtp.py ``EmailHandler``)."""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]
Purpose = Literal["password_reset", "invitation"]
KIND = "email"


def enqueue(
    conn: Conn,
    to_addr: str,
    subject: str,
    body: str,
    locale: str,
    purpose: Purpose,
    user_id: int | None,
) -> int:
    row = conn.execute(
        "INSERT INTO email_messages (to_addr, subject, body, locale, purpose, user_id)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (to_addr, subject, body, locale, purpose, user_id),
    ).fetchone()
    assert row is not None
    email_id = int(row[0])
    conn.execute(
        "INSERT INTO outbox (kind, idempotency_key, payload) VALUES (%s, %s, %s)",
        (KIND, f"email:{email_id}", Jsonb({"email_id": email_id})),
    )
    return email_id
