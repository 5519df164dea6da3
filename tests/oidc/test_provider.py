"""The provider in process (issue #17 part 1, D29-F): discovery, the code flow with PKCE S256,
the ID token checked with PyJWT against our JWKS (a library other than the provider's),
userinfo, refresh rotation, and the negative cases the issue names."""

from __future__ import annotations

import time
from typing import Any

import jwt
import psycopg
import pytest
from api_world import PASSWORD
from fastapi.testclient import TestClient
from oidc_helpers import (
    Platform,
    authorize_url,
    code_for,
    exchange,
    pkce,
    query_of,
    register,
    sign_in,
    token,
)

ISSUER = "https://testserver"


def _verify(client: TestClient, p: Platform, id_token: str) -> dict[str, Any]:
    jwks = client.get("/oidc/jwks").json()
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
    claims: dict[str, Any] = jwt.decode(id_token, key, algorithms=["RS256"], audience=p.client_id,
                                        issuer=ISSUER)  # fmt: skip
    return claims


def test_discovery_names_the_endpoints(client: TestClient) -> None:
    doc = client.get("/.well-known/openid-configuration").json()
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == ISSUER + "/oidc/authorize"
    assert doc["jwks_uri"] == ISSUER + "/oidc/jwks"
    assert doc["end_session_endpoint"] == ISSUER + "/oidc/logout"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["subject_types_supported"] == ["pairwise"]
    assert doc["response_types_supported"] == ["code"]


def test_code_flow_id_token_userinfo(client: TestClient, platform: Platform, world: Any) -> None:
    code, verifier = code_for(client, platform)
    r = exchange(client, platform, code, verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["cache-control"] == "no-store"
    assert "refresh_token" not in body  # no offline_access asked
    claims = _verify(client, platform, body["id_token"])
    assert claims["role"] == "student"
    assert claims["school_id"] == "s1" and claims["school_name"] == "School s1"
    assert claims["class"] == "5A" and claims["grade"] == 5
    assert "locale" not in claims  # not asked for
    assert claims["sub"] != str(world.users["student"]) and len(claims["sub"]) == 43
    info = client.get("/oidc/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.json()["sub"] == claims["sub"] and info.json()["class"] == "5A"


def _bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def test_wrong_redirect_uri_is_an_error_page_never_a_redirect(
    client: TestClient, platform: Platform
) -> None:
    _, challenge = pkce()
    for wrong in (
        "https://books.example/callback/",
        "https://books.example/callback?x=1",
        "https://evil.example/callback",
        "https://BOOKS.example/callback",
    ):
        url = authorize_url(platform, challenge, redirect_uri=wrong)
        r = client.get(url)
        assert r.status_code == 400, wrong
        assert "location" not in r.headers
        assert "did not register" in r.text
    r = client.get(authorize_url(platform, challenge, client_id="nope-nope-nope-nope"))
    assert r.status_code == 400 and "not registered" in r.text


def test_a_scope_the_client_was_not_allowed_goes_back_as_invalid_scope(
    client: TestClient, database_url: str, world: Any
) -> None:
    narrow = register(database_url, "Quiz", ["https://quiz.example/cb"], ["openid", "role"])
    _, challenge = pkce()
    sign_in(client, "alice@s1.pupil")
    for scope in ("openid role class", "openid role email", "role"):
        r = client.get(authorize_url(narrow, challenge, scope))
        assert r.status_code == 302, scope
        got = query_of(r.headers["location"])
        assert got["error"] == "invalid_scope" and got["state"] == "st-1"
        assert "code" not in got
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM oidc_codes").fetchone() == (0,)


def test_pkce_is_required_and_s256_only(client: TestClient, platform: Platform) -> None:
    sign_in(client, "alice@s1.pupil")
    verifier, challenge = pkce()
    cases = [authorize_url(platform, None),  # no challenge at all
             authorize_url(platform, None, code_challenge=verifier),  # no method: plain
             authorize_url(platform, None, code_challenge=verifier,
                           code_challenge_method="plain")]  # fmt: skip
    for url in cases:
        r = client.get(url)
        assert r.status_code == 302
        assert query_of(r.headers["location"])["error"] == "invalid_request"


def test_missing_or_wrong_verifier_is_refused(client: TestClient, platform: Platform) -> None:
    code, verifier = code_for(client, platform)
    r = exchange(client, platform, code, None)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    code, verifier = code_for(client, platform)
    other, _ = pkce()
    r = exchange(client, platform, code, other)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_a_reused_code_is_refused_and_revokes_what_it_gave(
    client: TestClient, platform: Platform
) -> None:
    code, verifier = code_for(client, platform)
    first = exchange(client, platform, code, verifier)
    assert first.status_code == 200
    again = exchange(client, platform, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # the first exchange's token dies with the reuse (RFC 6749 §4.1.2)
    r = client.get("/oidc/userinfo", headers=_bearer(first.json()["access_token"]))
    assert r.status_code == 401


def test_wrong_redirect_uri_or_client_at_the_token_endpoint(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    code, verifier = code_for(client, platform)
    r = token(client, platform, grant_type="authorization_code", code=code,
              redirect_uri="https://books.example/other", code_verifier=verifier)  # fmt: skip
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    other = register(database_url, "Other", ["https://books.example/callback"], ["openid"])
    r = exchange(client, other, code, verifier)  # a code is its own client's only
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = client.post("/oidc/token", data={"grant_type": "authorization_code", "code": code},
                    auth=(platform.client_id, "wrong secret"))  # fmt: skip
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_expired_code_and_expired_access_token(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    code, verifier = code_for(client, platform)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE oidc_codes SET expires_at = now() - interval '1 second'")
    assert exchange(client, platform, code, verifier).json()["error"] == "invalid_grant"
    code, verifier = code_for(client, platform)
    access = exchange(client, platform, code, verifier).json()["access_token"]
    assert client.get("/oidc/userinfo", headers=_bearer(access)).status_code == 200
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE oidc_access_tokens SET expires_at = now() - interval '1 second'")
    r = client.get("/oidc/userinfo", headers=_bearer(access))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


def test_a_tampered_id_token_fails_verification(client: TestClient, platform: Platform) -> None:
    code, verifier = code_for(client, platform)
    id_token = exchange(client, platform, code, verifier).json()["id_token"]
    _verify(client, platform, id_token)  # the untouched one verifies
    head, payload, sig = id_token.split(".")
    claims = jwt.utils.base64url_decode(payload).replace(b'"student"', b'"school_admin"')
    forged = ".".join([head, jwt.utils.base64url_encode(claims).decode(), sig])
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(client, platform, forged)
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(client, platform, ".".join([head, payload, flipped]))


def test_refresh_rotates_and_reuse_revokes_the_family(
    client: TestClient, platform: Platform
) -> None:
    code, verifier = code_for(client, platform, scope="openid role offline_access")
    first = exchange(client, platform, code, verifier).json()
    r1 = token(client, platform, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r1.status_code == 200, r1.text
    second = r1.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/oidc/userinfo", headers=_bearer(second["access_token"])).status_code == 200
    # the old refresh token again (a thief's copy): refused, and the whole family ends
    r2 = token(client, platform, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r2.status_code == 400 and r2.json()["error"] == "invalid_grant"
    assert client.get("/oidc/userinfo", headers=_bearer(second["access_token"])).status_code == 401
    r3 = token(client, platform, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert r3.status_code == 400


def test_sub_is_pairwise_and_claims_follow_the_registration(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    narrow = register(database_url, "Quiz", ["https://quiz.example/cb"], ["openid", "role"])
    code, verifier = code_for(client, platform)
    a1 = _verify(client, platform, exchange(client, platform, code, verifier).json()["id_token"])
    code, verifier = code_for(client, platform)
    a2 = _verify(client, platform, exchange(client, platform, code, verifier).json()["id_token"])
    code, verifier = code_for(client, narrow, scope="openid role")
    b = _verify(client, narrow, exchange(client, narrow, code, verifier).json()["id_token"])
    assert a1["sub"] == a2["sub"]  # stable for one platform
    assert b["sub"] != a1["sub"]  # unrelated across platforms
    assert b["role"] == "student"
    assert not {"school_id", "school_name", "class", "grade", "locale"} & set(b)


def test_deny_sends_access_denied_and_remembers_nothing(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    _, challenge = pkce()
    url = authorize_url(platform, challenge)
    sign_in(client, "alice@s1.pupil")
    r = client.get(url)
    assert r.status_code == 200 and "Oqulyq" in r.text and "Your class and grade" in r.text
    r = client.post(url, data={"decision": "deny"})
    assert query_of(r.headers["location"])["error"] == "access_denied"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM oidc_consents").fetchone() == (0,)


def test_consent_is_remembered_and_audited(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    code_for(client, platform)
    _, challenge = pkce()
    r = client.get(authorize_url(platform, challenge))  # same scopes: no second question
    assert r.status_code == 302 and "code=" in r.headers["location"]
    r = client.get(authorize_url(platform, challenge, "openid locale"))  # a new scope: asked
    assert r.status_code == 200
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT action, after->>'client_id' FROM audit_log WHERE entity = 'oidc_consents'"
        ).fetchall()
    assert rows == [("create", platform.client_id)]


def test_consent_post_from_another_site_is_refused(client: TestClient, platform: Platform) -> None:
    _, challenge = pkce()
    url = authorize_url(platform, challenge)
    sign_in(client, "alice@s1.pupil")
    r = client.post(url, data={"decision": "allow"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403


def test_prompt_none_without_a_session(client: TestClient, platform: Platform) -> None:
    _, challenge = pkce()
    r = client.get(authorize_url(platform, challenge, prompt="none"))
    assert r.status_code == 302
    assert query_of(r.headers["location"])["error"] == "login_required"


def test_signing_key_rotation_keeps_the_old_key_published(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    from cloud.oidc import keys

    code, verifier = code_for(client, platform)
    old = exchange(client, platform, code, verifier).json()["id_token"]
    with psycopg.connect(database_url) as conn:
        new_kid = keys.rotate(conn, 600)
    code, verifier = code_for(client, platform)
    new = exchange(client, platform, code, verifier).json()["id_token"]
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    assert jwt.get_unverified_header(old)["kid"] != new_kid
    _verify(client, platform, old)  # the retired key is still in the JWKS
    _verify(client, platform, new)
    with psycopg.connect(database_url) as conn:  # past its last token's expiry: dropped
        conn.execute("UPDATE oidc_signing_keys SET publish_until = now() - interval '1 second'"
                     " WHERE retired_at IS NOT NULL")  # fmt: skip
    kids = [k["kid"] for k in client.get("/oidc/jwks").json()["keys"]]
    assert kids == [new_kid]
    with pytest.raises(StopIteration):
        _verify(client, platform, old)


def test_a_switched_off_platform_loses_its_tokens(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    from cloud.auth.principal import Principal
    from cloud.oidc import clients

    code, verifier = code_for(client, platform)
    access = exchange(client, platform, code, verifier).json()["access_token"]
    with psycopg.connect(database_url) as conn:
        clients.disable(conn, Principal(user_id=None, email="t", role="platform_admin"),
                        platform.client_id)  # fmt: skip
    assert client.get("/oidc/userinfo", headers=_bearer(access)).status_code == 401
    _, challenge = pkce()
    assert client.get(authorize_url(platform, challenge)).status_code == 400


def test_ui_locales_picks_the_sign_in_pages_language(
    client: TestClient, platform: Platform
) -> None:
    _, challenge = pkce()
    client.headers["Accept-Language"] = "en"
    r = client.get(authorize_url(platform, challenge, ui_locales="ru"))
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    assert page.headers["content-language"] == "ru" and "Войдите" in page.text


def test_prompt_login_and_max_age_ask_for_the_password_again(
    client: TestClient, platform: Platform
) -> None:
    code, verifier = code_for(client, platform)  # signed in and agreed
    first = _verify(client, platform, exchange(client, platform, code, verifier).json()["id_token"])
    for extra in ({"prompt": "login"}, {"max_age": "0"}):
        verifier, challenge = pkce()
        r = client.get(authorize_url(platform, challenge, **extra))
        assert r.status_code == 303 and r.headers["location"].startswith("/oidc/login?"), extra
        back = query_of(r.headers["location"])["next"]
        assert "prompt" not in back and "max_age" not in back  # no loop after the sign-in
        time.sleep(1.1)  # auth_time has whole seconds
        r = client.post("/oidc/login", data={"email": "alice@s1.pupil", "password": PASSWORD,
                                             "next": back})  # fmt: skip
        assert r.status_code == 303 and r.headers["location"] == back
        r = client.get(back)
        assert r.status_code == 302
        code = query_of(r.headers["location"])["code"]
        again = exchange(client, platform, code, verifier).json()["id_token"]
        assert _verify(client, platform, again)["auth_time"] > first["auth_time"]
    # a session younger than max_age is used as it is
    verifier, challenge = pkce()
    r = client.get(authorize_url(platform, challenge, max_age="3600"))
    assert r.status_code == 302 and "code=" in r.headers["location"]


def test_long_expired_codes_and_tokens_are_swept(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    code, verifier = code_for(client, platform, scope="openid offline_access")
    exchange(client, platform, code, verifier)
    code, verifier = code_for(client, platform, scope="openid offline_access")  # kept: live
    with psycopg.connect(database_url) as conn:
        for table in ("oidc_access_tokens", "oidc_refresh_tokens"):
            conn.execute(f"UPDATE {table} SET expires_at = now() - interval '2 days'")
        conn.execute("UPDATE oidc_codes SET expires_at = now() - interval '2 days'"
                     " WHERE used_at IS NOT NULL")  # fmt: skip
    assert exchange(client, platform, code, verifier).status_code == 200  # sweeps
    with psycopg.connect(database_url) as conn:
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                  for t in ("oidc_codes", "oidc_access_tokens", "oidc_refresh_tokens")]  # fmt: skip
    assert counts == [1, 1, 1]  # the live code (now used) and its two tokens
