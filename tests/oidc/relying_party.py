"""An independent relying party for the single sign-on tests: an e-textbook platform's web
server built on requests-oauthlib (authorization code with PKCE S256) and PyJWT (its
PyJWKClient fetches our JWKS and verifies the ID token), libraries other than the provider's
Authlib and joserfc. It runs on its own loopback port, so the browser crosses origins as it
would between two sites, and it speaks to the provider's endpoints found by discovery."""

from __future__ import annotations

import html
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import requests
from requests_oauthlib import OAuth2Session

SCOPES = ["openid", "role", "school", "class", "locale"]


class RelyingParty:
    def __init__(self, issuer: str) -> None:
        self.issuer, self.client_id, self.secret = issuer, "", ""  # set once registered
        self.meta: dict[str, Any] = requests.get(
            f"{issuer}/.well-known/openid-configuration", timeout=10
        ).json()
        self.jwks = jwt.PyJWKClient(self.meta["jwks_uri"])
        self.pending: dict[str, tuple[OAuth2Session, str]] = {}  # state -> (session, nonce)
        self.id_tokens: list[str] = []
        self.errors: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RelyingParty:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def redirect_uri(self) -> str:
        return f"{self.base}/callback"

    def start(self) -> str:
        session = OAuth2Session(self.client_id, redirect_uri=self.redirect_uri, scope=SCOPES,
                                pkce="S256")  # fmt: skip
        nonce = secrets.token_urlsafe(16)
        url, state = session.authorization_url(self.meta["authorization_endpoint"], nonce=nonce)
        self.pending[state] = (session, nonce)
        return str(url)

    def callback(self, path: str) -> str:
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        if "error" in query:
            return f'<p id="error">{html.escape(query["error"])}</p>'
        session, nonce = self.pending.pop(query["state"])
        token = session.fetch_token(self.meta["token_endpoint"],
                                    authorization_response=self.base + path,
                                    client_secret=self.secret)  # fmt: skip
        id_token = token["id_token"]
        key = self.jwks.get_signing_key_from_jwt(id_token)
        claims = jwt.decode(id_token, key.key, algorithms=["RS256"], audience=self.client_id,
                            issuer=self.issuer)  # fmt: skip
        if claims.get("nonce") != nonce:
            raise AssertionError("nonce differs")
        info = session.get(self.meta["userinfo_endpoint"]).json()
        if info["sub"] != claims["sub"]:
            raise AssertionError("userinfo names someone else")
        self.id_tokens.append(id_token)
        rows = "".join(f'<dd id="claim-{html.escape(k)}">{html.escape(str(v))}</dd>'
                       for k, v in sorted(claims.items()))  # fmt: skip
        return f'<h1 id="signed-in">Oqulyq: signed in</h1><dl>{rows}</dl>'

    def logout(self) -> str:
        q = {"id_token_hint": self.id_tokens[-1], "post_logout_redirect_uri": f"{self.base}/bye",
             "state": "bye-1"}  # fmt: skip
        return f"{self.meta['end_session_endpoint']}?{urlencode(q)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        rp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str = "", location: str | None = None) -> None:
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                data = f'<!doctype html><html lang="en"><title>Oqulyq</title>{body}'.encode()
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                try:
                    if self.path == "/favicon.ico":
                        self._send(204)
                    elif self.path == "/start":
                        self._send(302, location=rp.start())
                    elif self.path.startswith("/callback"):
                        self._send(200, rp.callback(self.path))
                    elif self.path == "/logout":
                        self._send(302, location=rp.logout())
                    elif self.path.startswith("/bye"):
                        state = parse_qs(urlsplit(self.path).query).get("state", [""])[0]
                        self._send(200, f'<h1 id="bye">Signed out</h1><p id="state">{state}</p>')
                    else:
                        self._send(404)
                except Exception as e:  # the test reads these: a failure is never silent
                    rp.errors.append(repr(e))
                    self._send(500, f'<p id="rp-error">{html.escape(repr(e))}</p>')

        return Handler
