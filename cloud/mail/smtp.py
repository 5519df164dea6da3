"""Delivering queued e-mails over SMTP (Python's smtplib) as an outbox handler: the outbox
worker's claim, lease, backoff, retries and dead letters carry every mail (cloud/workers/
outbox.py). One SMTP conversation per mail: a few a day per school, so no pooling.

Outcomes: the server accepted the mail, delivered; the server refused it for good (5xx: the
address does not exist, the sender is refused), a dead letter at once; anything else (network,
4xx "try later", a timeout), retried. Once sent or dead, the body is cleared: it held a
one-time link (migration 0030)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import psycopg

from cloud.mail.queue import KIND
from cloud.outbox.contract import BaseHandler, Delivered, Fail, OutboxItem, Outcome, Retry

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Mail:
    to_addr: str
    subject: str
    body: str
    locale: str


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    starttls: bool
    user: str | None
    password: str | None
    sender: str
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpConfig:
        return cls(settings.smtp_host, settings.smtp_port, settings.smtp_starttls,
                   settings.smtp_user, settings.smtp_password, settings.smtp_from,
                   settings.smtp_timeout_s)  # fmt: skip


def message(cfg: SmtpConfig, mail: Mail, key: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = cfg.sender
    msg["To"] = mail.to_addr
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(localtime=False)
    # the outbox's key names the mail: a retry after a lost answer is the same message
    msg["Message-ID"] = make_msgid(idstring=key.replace(":", "-"), domain=cfg.sender.split("@")[1])
    msg["Content-Language"] = mail.locale
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies, please
    msg.set_content(mail.body)  # text/plain; charset utf-8 (Kazakh and Russian letters)
    return msg


def send(cfg: SmtpConfig, msg: EmailMessage) -> None:
    with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
        smtp.ehlo()
        if cfg.starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if cfg.user:
            smtp.login(cfg.user, cfg.password or "")
        smtp.send_message(msg)


class EmailHandler(BaseHandler):
    kind = KIND

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg
        self._mails: dict[int, Mail] = {}

    def claimed(self, conn: Conn, items: Sequence[OutboxItem]) -> None:
        """The claimed rows' messages, read in the claim transaction (delivery has none)."""
        ids = [int(i.payload.get("email_id", 0)) for i in items]
        for eid, to_addr, subject, body, locale in conn.execute(
            "SELECT id, to_addr, subject, body, locale FROM email_messages"
            " WHERE id = ANY(%s) AND body IS NOT NULL",
            (ids,),
        ).fetchall():
            self._mails[int(eid)] = Mail(to_addr, subject, body, locale)

    def deliver(self, item: OutboxItem) -> Outcome:
        mail = self._mails.pop(int(item.payload.get("email_id", 0)), None)
        if mail is None:
            return Fail("no such e-mail, or it was already sent")
        try:
            send(self.cfg, message(self.cfg, mail, item.idempotency_key))
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            if all(500 <= c < 600 for c in codes):
                return Fail(f"recipient refused: {e.recipients}")
            return Retry(f"recipient deferred: {e.recipients}")
        except smtplib.SMTPResponseException as e:
            text = f"SMTP {e.smtp_code}: {e.smtp_error!r}"
            if 500 <= e.smtp_code < 600 and not isinstance(e, smtplib.SMTPAuthenticationError):
                return Fail(text)
            return Retry(text)  # 4xx, or a wrong password the operator can fix
        except (OSError, smtplib.SMTPException) as e:  # TimeoutError is an OSError
            return Retry(f"{type(e).__name__}: {e}")
        return Delivered()

    def record(self, conn: Conn, item: OutboxItem, outcome: Outcome, dead: bool) -> None:
        eid = int(item.payload.get("email_id", 0))
        if isinstance(outcome, Delivered):
            conn.execute("UPDATE email_messages SET sent_at = now(), body = NULL WHERE id = %s",
                         (eid,))  # fmt: skip
        elif dead:
            conn.execute("UPDATE email_messages SET body = NULL WHERE id = %s", (eid,))
