"""The outbox handler for kind ``ejournal_day``: a school's day, built when the row is claimed
(so it holds what the ingest stored up to then) and pushed through the adapter with the row's
idempotency key. Retries are the outbox's; refused credentials or data are dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from cloud.domain.errors import NotFound
from cloud.integrations.ejournal.contract import (
    Adapter,
    PermanentError,
    SchoolDay,
    TransientError,
)
from cloud.integrations.ejournal.day import school_day
from cloud.outbox.contract import BaseHandler, Conn, Delivered, Fail, OutboxItem, Outcome, Retry

KIND = "ejournal_day"


class EJournalHandler(BaseHandler):
    kind = KIND

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self._days: dict[int, SchoolDay | Fail] = {}

    def claimed(self, conn: Conn, items: Sequence[OutboxItem]) -> None:
        self._days.clear()  # left from a round the worker abandoned: those rows come back
        for item in items:
            try:
                day = date.fromisoformat(str(item.payload["day"]))
                self._days[item.id] = school_day(conn, str(item.payload["school_id"]), day)
            except (KeyError, ValueError) as e:
                self._days[item.id] = Fail(f"bad payload: {e}")
            except NotFound as e:
                self._days[item.id] = Fail(str(e))

    def deliver(self, item: OutboxItem) -> Outcome:
        day = self._days.pop(item.id, None)
        if day is None:
            return Retry("the day was not built at claim time")
        if isinstance(day, Fail):
            return day
        try:
            answer = self.adapter.push_day(day, item.idempotency_key)
        except TransientError as e:
            return Retry(str(e))
        except PermanentError as e:
            return Fail(str(e))
        return Delivered(answer)


def handler_from_settings(settings: Any) -> EJournalHandler:
    from pathlib import Path

    from cloud.integrations.ejournal.oauth import ClientCredentials
    from cloud.integrations.ejournal.rest import RestEJournal

    needed = ("ejournal_token_url", "ejournal_client_id", "ejournal_client_secret_file")
    missing = [name for name in needed if not getattr(settings, name)]
    if missing:
        raise ValueError(f"QADAM_EJOURNAL_URL is set but {', '.join(missing)} is not")
    secret = Path(settings.ejournal_client_secret_file).read_text().strip()
    oauth = ClientCredentials(settings.ejournal_token_url, settings.ejournal_client_id, secret,
                              settings.ejournal_scope, settings.ejournal_timeout_s)  # fmt: skip
    return EJournalHandler(RestEJournal(settings.ejournal_url, oauth))
