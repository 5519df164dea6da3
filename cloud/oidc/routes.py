"""The provider's machine endpoints: discovery, JWKS, token and userinfo (docs/sso.md). The
pages a person sees (sign-in, consent, sign-out) are cloud/console/oidc_pages.py.

No CSRF check here: relying parties call the token endpoint from their servers, with their
client secret, and userinfo with a bearer token; no cookie is read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from cloud.api.deps import ConnDep, SettingsDep
from cloud.oidc import claims, credentials, keys
from cloud.oidc.clients import SCOPES, find
from cloud.oidc.server import AUTH_METHODS, Provider
from cloud.oidc.server import Request as OidcRequest
from cloud.settings import Settings

router = APIRouter(include_in_schema=False)
PREFIX = "/oidc"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def issuer(request: Request, settings: Settings) -> str:
    """The configured public origin, else the request's own (development and tests)."""
    return settings.oidc_issuer or f"{request.url.scheme}://{request.url.netloc}"


def authlib_uri(request: Request, settings: Settings) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return issuer(request, settings) + request.url.path + query


@router.get("/.well-known/openid-configuration")
def discovery(request: Request, settings: SettingsDep) -> JSONResponse:
    iss = issuer(request, settings)
    doc = {
        "issuer": iss,
        "authorization_endpoint": f"{iss}{PREFIX}/authorize",
        "token_endpoint": f"{iss}{PREFIX}/token",
        "userinfo_endpoint": f"{iss}{PREFIX}/userinfo",
        "jwks_uri": f"{iss}{PREFIX}/jwks",
        "end_session_endpoint": f"{iss}{PREFIX}/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": [keys.ALG],
        "scopes_supported": list(SCOPES),
        "claims_supported": sorted(
            {c for cs in claims.SCOPE_CLAIMS.values() for c in cs}
            | {"iss", "aud", "exp", "iat", "auth_time", "nonce"}
        ),
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "ui_locales_supported": ["kk", "ru", "en"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }
    return JSONResponse(doc, headers={"Cache-Control": "public, max-age=300"})


@router.get(PREFIX + "/jwks")
def jwks(conn: ConnDep, settings: SettingsDep) -> JSONResponse:
    # a signing key exists before anyone fetches the set (rotated here when due, too)
    keys.signing_key(conn, settings.oidc_key_rotation_s, settings.oidc_access_token_ttl_s)
    # short caching: a rotated-in key is seen within minutes, the old one stays published
    return JSONResponse(keys.jwks(conn), headers={"Cache-Control": "public, max-age=300"})


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    form = await request.form()
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


FormPairs = Annotated[list[tuple[str, str]], Depends(form_pairs)]


@router.post(PREFIX + "/token")
def token(request: Request, conn: ConnDep, settings: SettingsDep, pairs: FormPairs) -> Response:
    """Authlib's token endpoint: authorization_code (with the PKCE verifier) and refresh_token.
    Errors are RFC 6749 §5.2 JSON; a refused request still commits what it revoked (a reused
    code or refresh token ends its family)."""
    provider = Provider(conn, settings, issuer(request, settings))
    req = OidcRequest("POST", authlib_uri(request, settings), request.headers, pairs)
    response: Response = provider.create_token_response(req)
    credentials.sweep(conn, 100)  # the long-expired, a few at a time
    return response


def _bearer_error(description: str) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_token", "error_description": description},
        status_code=401,
        headers={
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"',
            **NO_STORE,
        },  # fmt: skip
    )


@router.api_route(PREFIX + "/userinfo", methods=["GET", "POST"])
def userinfo(request: Request, conn: ConnDep) -> JSONResponse:
    """The claims of the access token's scope, for the platform the token was issued to."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return JSONResponse({"error": "invalid_request"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer", **NO_STORE})  # fmt: skip
    found = credentials.access(conn, value.strip())
    client = find(conn, found.client_id) if found else None
    if found is None or client is None:
        return _bearer_error("The access token is not valid.")
    body: dict[str, Any] = claims.user_claims(conn, claims.Subject(found.user_id, client),
                                              found.scope)  # fmt: skip
    return JSONResponse(body, headers=NO_STORE)
