"""``HttpConnector``: our implementation of the Social Wallet HTTPS JSON contract
(docs/social-wallet.md, "Transport").

    POST {base}/v1/meal-records          Idempotency-Key: <key>, JSON body (MealRecord.to_json)
        202 {"reference": "..."}                      accepted
        409 {"reference": "..."}                      duplicate key: accepted earlier
        422 {"reasons": [{"code": "...", "message": "..."}]}   rejected, final
        anything else, timeouts, connection errors   TransientError (retried)
    GET  {base}/v1/meal-records/{key}
        200 {"state": "accepted", "reference": "..."} | {"state": "rejected", "reasons": [...]}
        404                                           never received
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from cloud.socialwallet.connector import (
    Accepted,
    Answer,
    Connector,
    MealRecord,
    Reason,
    Rejected,
    TransientError,
)

MAX_REASONS = 20


def _reasons(body: Any) -> tuple[Reason, ...]:
    raw = body.get("reasons") if isinstance(body, dict) else None
    out: list[Reason] = []
    if isinstance(raw, list):
        for r in raw[:MAX_REASONS]:
            if isinstance(r, dict) and isinstance(r.get("code"), str):
                out.append(Reason(r["code"][:64], str(r.get("message", ""))[:500]))
    return tuple(out) or (Reason("unspecified", "rejected without a reason code"),)


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _reference(body: Any) -> str | None:
    ref = body.get("reference") if isinstance(body, dict) else None
    return ref[:200] if isinstance(ref, str) and ref else None


class HttpConnector(Connector):
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "qadam-socialwallet/1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            return self._client.request(method, url, **kw)
        except httpx.TimeoutException as e:
            raise TransientError(f"timeout: {type(e).__name__}") from e
        except httpx.HTTPError as e:
            raise TransientError(f"transport: {type(e).__name__}: {e}") from e

    def submit(self, record: MealRecord, idempotency_key: str) -> Answer:
        resp = self._request(
            "POST",
            "/v1/meal-records",
            json=record.to_json(idempotency_key),
            headers={"Idempotency-Key": idempotency_key},
        )
        body = _json(resp)
        if resp.status_code in (200, 201, 202):
            ref = _reference(body)
            if ref is None:
                raise TransientError(f"HTTP {resp.status_code} without a reference")
            return Accepted(ref)
        if resp.status_code == 409:
            ref = _reference(body)
            if ref is not None:
                return Accepted(ref, duplicate=True)
            known = self.status(idempotency_key)  # a 409 without the reference: ask
            if isinstance(known, Accepted):
                return Accepted(known.reference, duplicate=True)
            if known is None:
                raise TransientError("HTTP 409 but the status query does not know the key")
            return known
        if resp.status_code == 422:
            return Rejected(_reasons(body))
        raise TransientError(f"HTTP {resp.status_code}: {resp.text[:200]}")

    def status(self, idempotency_key: str) -> Answer | None:
        resp = self._request("GET", "/v1/meal-records/" + quote(idempotency_key, safe=""))
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise TransientError(f"status HTTP {resp.status_code}: {resp.text[:200]}")
        body = _json(resp)
        state = body.get("state") if isinstance(body, dict) else None
        if state == "accepted":
            ref = _reference(body)
            if ref is None:
                raise TransientError("status: accepted without a reference")
            return Accepted(ref)
        if state == "rejected":
            return Rejected(_reasons(body))
        raise TransientError(f"status: unknown state {state!r}")

    def close(self) -> None:
        self._client.close()
