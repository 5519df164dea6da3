"""The OAuth2 client credentials grant (RFC 6749 §4.4), our client side: one access token,
fetched when needed, reused until shortly before it expires, fetched again once when the
resource server answers 401 (revoked or expired early), never more than once per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from cloud.integrations.ejournal.contract import PermanentError, TransientError

SKEW_S = 30.0  # fetch a new token this long before the old one expires


class ClientCredentials:
    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.clock = clock
        self.http = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.fetched = 0  # tokens fetched (for tests and logs)

    def close(self) -> None:
        self.http.close()

    def token(self, fresh: bool = False) -> str:
        with self._lock:
            if fresh or self._token is None or self.clock() >= self._expires - SKEW_S:
                self._token, self._expires = self._fetch()
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        try:  # client_secret_basic (RFC 6749 §2.3.1), the method every server must support
            r = self.http.post(self.token_url, data=form, auth=(self.client_id, self._secret))
        except httpx.HTTPError as e:
            raise TransientError(f"token endpoint: {type(e).__name__}: {e}") from e
        if r.status_code >= 500 or r.status_code == 429:
            raise TransientError(f"token endpoint: HTTP {r.status_code}")
        if r.status_code != 200:  # invalid_client, unauthorized_client, invalid_scope
            raise PermanentError(f"token endpoint refused us: HTTP {r.status_code} {r.text[:200]}")
        try:
            doc = r.json()
            token = str(doc["access_token"])
            kind = str(doc.get("token_type", "")).lower()
            lifetime = float(doc.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as e:
            raise PermanentError(f"token endpoint: not a token response: {e}") from e
        if kind != "bearer":
            raise PermanentError(f"token endpoint: token_type {kind!r}, expected bearer")
        self.fetched += 1
        return token, self.clock() + lifetime

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """``method url`` with the bearer token; on 401 a new token and one more try."""
        headers = dict(kw.pop("headers", {}))
        for fresh in (False, True):
            headers["Authorization"] = f"Bearer {self.token(fresh=fresh)}"
            try:
                r = self.http.request(method, url, headers=headers, **kw)
            except httpx.HTTPError as e:
                raise TransientError(f"{type(e).__name__}: {e}") from e
            if r.status_code != 401:
                return r
        raise PermanentError("the e-journal refused a freshly fetched token (HTTP 401)")
