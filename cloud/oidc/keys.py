"""The ID tokens' signing keys (RS256) and the JWKS.

The newest unretired key signs. When it is older than ``oidc_key_rotation_s`` the next signer
makes a new one and retires the old, which stays published until the last token it signed has
expired (``publish_until``): a relying party that cached the JWKS keeps verifying, and one that
fetches it anew finds the new ``kid``. Private keys are PEM in the database: the database is
already the secret the whole service trusts (sessions, the devices' site keys)."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

import psycopg
from joserfc.jwk import RSAKey
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]
ALG = "RS256"
ROTATE_LOCK = 0x0D1C_0043  # pg advisory lock: one rotation at a time


def _new_key(conn: Conn) -> tuple[str, RSAKey]:
    key = RSAKey.generate_key(2048, private=True)
    kid = key.thumbprint()
    public = key.as_dict(private=False)
    public.update({"kid": kid, "use": "sig", "alg": ALG})
    pem = key.as_pem(private=True)
    conn.execute(
        "INSERT INTO oidc_signing_keys (kid, private_pem, public_jwk) VALUES (%s, %s, %s)",
        (kid, pem.decode() if isinstance(pem, bytes) else pem, Jsonb(public)),
    )
    return kid, key


def rotate(conn: Conn, token_ttl_s: int) -> str:
    """A new signing key now; the signing one is retired, published ``token_ttl_s`` longer."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (ROTATE_LOCK,))
    conn.execute(
        "UPDATE oidc_signing_keys SET retired_at = now(), publish_until = now() + %s"
        " WHERE retired_at IS NULL",
        (timedelta(seconds=token_ttl_s + 60),),  # a minute of clock skew on top
    )
    return _new_key(conn)[0]


def _current(conn: Conn, rotation_s: int) -> tuple[str, str, bool] | None:
    row = conn.execute(
        "SELECT kid, private_pem, created_at < now() - %s FROM oidc_signing_keys"
        " WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1",
        (timedelta(seconds=rotation_s),),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), bool(row[2]))


def signing_key(conn: Conn, rotation_s: int, token_ttl_s: int) -> tuple[str, RSAKey]:
    """The key that signs now: the newest unretired one, rotated first when it is too old."""
    found = _current(conn, rotation_s)
    if found is None or found[2]:
        # one rotation however many requests find the key old at once: the others wait for
        # the lock and then see the new key
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ROTATE_LOCK,))
        found = _current(conn, rotation_s)
        if found is None or found[2]:
            rotate(conn, token_ttl_s)
            found = _current(conn, rotation_s)
        assert found is not None
    return found[0], _private(found[0], found[1])


@lru_cache(maxsize=8)
def _private(kid: str, pem: str) -> RSAKey:
    """A key parsed once per process: loading a PEM checks the RSA key (~75 ms here), a
    signature takes ~1 ms. A kid names one key for ever, so the cache cannot go stale."""
    return RSAKey.import_key(pem)


def jwks(conn: Conn) -> dict[str, list[dict[str, Any]]]:
    """The public keys a relying party may meet: the signer and every retired key whose tokens
    may still be alive."""
    rows = conn.execute(
        "SELECT public_jwk FROM oidc_signing_keys"
        " WHERE retired_at IS NULL OR publish_until > now() ORDER BY created_at DESC"
    ).fetchall()
    return {"keys": [dict(r[0]) for r in rows]}


def public_keys(conn: Conn) -> dict[str, RSAKey]:
    """kid -> public key, for checking our own ID tokens (an ``id_token_hint``)."""
    return {k["kid"]: RSAKey.import_key(k) for k in jwks(conn)["keys"]}
