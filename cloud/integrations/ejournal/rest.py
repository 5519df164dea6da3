"""An adapter for a generic REST e-journal (docs/integrations.md "E-journals"):

``PUT {base}/schools/{external school id}/attendance/{YYYY-MM-DD}`` with the day as JSON, an
``Idempotency-Key`` header and an OAuth2 bearer token from the client credentials grant. 2xx
stored (an optional ``{"reference": ...}``); 408, 429, 5xx retried; other answers permanent."""

from __future__ import annotations

from urllib.parse import quote

from cloud.integrations.ejournal.contract import (
    Accepted,
    PermanentError,
    SchoolDay,
    TransientError,
)
from cloud.integrations.ejournal.oauth import ClientCredentials


class RestEJournal:
    name = "rest"

    def __init__(self, base_url: str, oauth: ClientCredentials) -> None:
        self.base_url = base_url.rstrip("/")
        self.oauth = oauth

    def push_day(self, day: SchoolDay, idempotency_key: str) -> Accepted:
        url = (f"{self.base_url}/schools/{quote(day.external_school_id, safe='')}"
               f"/attendance/{day.day.isoformat()}")  # fmt: skip
        r = self.oauth.request("PUT", url, json=day.as_json(),
                               headers={"Idempotency-Key": idempotency_key})  # fmt: skip
        if 200 <= r.status_code < 300:
            try:
                ref = r.json().get("reference") if r.content else None
            except ValueError:
                ref = None
            return Accepted(None if ref is None else str(ref))
        answer = f"HTTP {r.status_code}: {r.text[:200]}"
        if r.status_code in (408, 429) or r.status_code >= 500:
            raise TransientError(answer)
        raise PermanentError(answer)
