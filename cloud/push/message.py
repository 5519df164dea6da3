"""A notification as the outbox hands it to a push service, and the push service interface
(Web Push delivery: cloud/push/service.py; the logging and recording ones: the demo, the tests)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("qadam.outbox")


@dataclass(frozen=True)
class PushMessage:
    idempotency_key: str
    person_id: int | None
    school_id: str | None
    reader: str | None  # in / out / canteen
    occurred_at: str | None
    kind: str = "parent_notification"  # or low_balance, report_reminder, quiet_summary
    payload: dict[str, Any] | None = None


class PushService(Protocol):
    def send(self, message: PushMessage) -> None:
        """Deliver one notification to the person's guardians; raise to have it retried. Must
        dedupe on ``message.idempotency_key`` (it can arrive more than once)."""


class LoggingPushService:
    """Used when no VAPID key is configured (the demo): logs what would be pushed. With a key,
    cloud.push.service.WebPushService delivers by Web Push."""

    def send(self, message: PushMessage) -> None:
        log.info(
            "push (logging only) key=%s person=%s reader=%s at=%s",
            message.idempotency_key,
            message.person_id,
            message.reader,
            message.occurred_at,
        )


@dataclass
class RecordingPushService:
    """A fake push service for tests: records messages; fails the first ``fail_first`` calls."""

    fail_first: int = 0
    sent: list[PushMessage] = field(default_factory=list)
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: PushMessage) -> None:
        with self._lock:
            self.calls += 1
            if self.calls <= self.fail_first:
                raise ConnectionError("push service unavailable (fake)")
            self.sent.append(message)
