"""Authlib's authorization server, wired to FastAPI and PostgreSQL.

One ``Provider`` per request (it holds the request's connection): Authlib's authorization-code
grant with two extensions, PKCE restricted to S256 and required (``PkceS256``), and OpenID
Connect's ID token (``IdToken``, RS256 with our rotating keys, claims.py); its refresh-token
grant with rotation (credentials.py). Authlib validates the protocol (parameters, client
authentication, redirect URIs through ``Client.check_redirect_uri``, scopes, PKCE, nonce); this
module answers its questions from the database."""

from __future__ import annotations

import secrets
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import psycopg
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode
from fastapi.responses import JSONResponse, Response

from cloud.oidc import claims, credentials, keys
from cloud.oidc.clients import SCOPES, Client, find
from cloud.settings import Settings

Conn = psycopg.Connection[Any]
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._data = dict(pairs)
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for k, v in pairs:
            self._datalist[k].append(v)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class Request(OAuth2Request):  # type: ignore[misc]
    """An HTTP request as Authlib reads it: the authorization endpoint's parameters are the
    query's, the token endpoint's the form's."""

    def __init__(self, method: str, uri: str, headers: Any, params: list[tuple[str, str]],
                 user: claims.Subject | None = None) -> None:  # fmt: skip
        super().__init__(method, uri, headers=headers)
        self.payload = Payload(params)
        self._params = params
        self.user = user

    @property
    def args(self) -> dict[str, str]:
        return dict(self._params)

    @property
    def form(self) -> dict[str, str]:
        return dict(self._params)


class PkceS256(CodeChallenge):  # type: ignore[misc]
    """PKCE on every request, S256 only: ``plain`` (or no method) is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge' (PKCE S256 is required).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class IdToken(OpenIDCode):  # type: ignore[misc]
    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=False)
        self.p = provider

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return credentials.nonce_seen(self.p.conn, request.payload.client_id, nonce)

    def _key(self) -> tuple[str, Any]:
        s = self.p.settings
        return keys.signing_key(self.p.conn, s.oidc_key_rotation_s, s.oidc_access_token_ttl_s)

    def resolve_client_private_key(self, client: Client) -> Any:
        return self._key()[1]

    def get_client_algorithm(self, client: Client) -> str:
        return keys.ALG

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": keys.ALG, "kid": self._key()[0], "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.p.issuer, "aud": [client.client_id], "iat": now,
                "exp": now + self.p.settings.oidc_access_token_ttl_s}  # fmt: skip

    def generate_user_info(self, user: claims.Subject, scope: str) -> dict[str, Any]:
        return claims.user_claims(self.p.conn, user, scope)


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def save_authorization_code(self, code: str, request: Request) -> None:
        p: Provider = self.server
        assert request.user is not None
        data = request.payload.data
        c = credentials.Code(b"", request.client.client_id, request.user.user_id,
                             data["redirect_uri"], request.scope, data.get("nonce"),
                             data["code_challenge"], p.auth_time, uuid.uuid4())  # fmt: skip
        credentials.save_code(p.conn, code, c, p.settings.oidc_code_ttl_s)

    def query_authorization_code(self, code: str, client: Client) -> credentials.Code | None:
        return credentials.take_code(self.server.conn, code, client.client_id)

    def delete_authorization_code(self, authorization_code: credentials.Code) -> None:
        credentials.mark_code_used(self.server.conn, authorization_code)

    def authenticate_user(self, authorization_code: credentials.Code) -> claims.Subject | None:
        if not claims.user_is_active(self.server.conn, authorization_code.user_id):
            return None
        return claims.Subject(authorization_code.user_id, self.request.client)

    def generate_token(self, user: Any = None, scope: str | None = None, **kw: Any) -> Any:
        # a refresh token only when the platform asked for offline access (OIDC Core 11)
        offline = (
            kw.pop("include_refresh_token", True) and "offline_access" in (scope or "").split()
        )
        return super().generate_token(user, scope, include_refresh_token=offline, **kw)


class RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every use hands out the next one

    def authenticate_refresh_token(self, refresh_token: str) -> credentials.Refresh | None:
        return credentials.take_refresh(self.server.conn, refresh_token)

    def authenticate_user(self, refresh_token: credentials.Refresh) -> claims.Subject | None:
        if not claims.user_is_active(self.server.conn, refresh_token.user_id):
            return None
        return claims.Subject(refresh_token.user_id, self.request.client)

    def revoke_old_credential(self, refresh_token: credentials.Refresh) -> None:
        credentials.mark_refresh_used(self.server.conn, refresh_token)


class Provider(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, conn: Conn, settings: Settings, issuer: str) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.conn, self.settings, self.issuer = conn, settings, issuer
        self.auth_time = datetime.now(UTC)  # the sign-in's time, set by the route
        ttl = settings.oidc_access_token_ttl_s
        self.register_token_generator("default", BearerTokenGenerator(
            lambda **_: secrets.token_urlsafe(32), lambda **_: secrets.token_urlsafe(48),
            lambda _client, _grant: ttl))  # fmt: skip
        self.register_grant(CodeGrant, [PkceS256(required=True), IdToken(self)])
        self.register_grant(RefreshGrant)

    def query_client(self, client_id: str) -> Client | None:
        return find(self.conn, client_id)

    def save_token(self, token: dict[str, Any], request: Request) -> None:
        if request.authorization_code is not None:
            family, auth_time = (
                request.authorization_code.family,
                request.authorization_code.auth_time,
            )
        else:
            family, auth_time = request.refresh_token.family, request.refresh_token.auth_time
        ttl, user = self.settings.oidc_refresh_token_ttl_s, request.user
        assert user is not None  # set by the grant before its token is made
        credentials.save_tokens(self.conn, token, request.client.client_id, user.user_id,
                                family, auth_time, ttl)  # fmt: skip

    def create_oauth2_request(self, request: Any) -> Request:
        assert isinstance(request, Request)
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError  # no JSON endpoints of Authlib's are used

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        hdrs = dict(headers or [])
        if isinstance(body, dict):
            hdrs.pop("Content-Type", None)
            return JSONResponse(body, status_code=status, headers=hdrs)
        return Response(body or b"", status_code=status, headers=hdrs)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass
