"""A real SMTP server in the test process (aiosmtpd) that keeps what it receives, and the
outbox worker that sends the queued e-mails to it (helpers of the e-mail tests)."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from cloud.mail.smtp import EmailHandler, SmtpConfig
from cloud.workers.outbox import OutboxWorker


@dataclass
class Inbox:
    """What the server received; addresses in ``refuse`` are refused for good (550)."""

    messages: list[Message] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)  # fmt: skip
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(msg)
        return "250 OK"

    def body(self, i: int = -1) -> str:
        part = self.messages[i]
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode(part.get_content_charset() or "utf-8")

    def link(self, i: int = -1) -> str:
        m = re.search(r"https?://\S+", self.body(i))
        assert m is not None, self.body(i)
        return m.group(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def mail_settings(port: int) -> dict[str, Any]:
    """The Settings keywords of e-mail through the test server (plain SMTP on loopback)."""
    return {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False,
            "smtp_from": "no-reply@qadam.kz", "smtp_timeout_s": 10}  # fmt: skip


def mail_worker(database_url: str, settings: Any) -> OutboxWorker:
    """The outbox worker with only the e-mail handler, retrying at once (tests call run_once)."""
    return OutboxWorker(database_url, [EmailHandler(SmtpConfig.from_settings(settings))],
                        backoff_base_s=0.001, backoff_max_s=0.001, max_attempts=3)  # fmt: skip
