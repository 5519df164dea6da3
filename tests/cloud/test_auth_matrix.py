"""Authorisation matrix: every API route x every role, generated from ``app.routes``.

EXPECTED is written from the issue's rules, not read from the code: a route added without an
entry here fails ``test_every_route_has_an_entry``. A denied role gets 403 before anything is
read or validated; an allowed role gets past the role gate (anything but 401/403, never 5xx).
Object scope (own school, own children) is tested in test_api_scope.py and
test_api_scope_schools.py.

Every change through the API is audited (D8): a non-GET call that succeeds must add an audit_log
row, here for every role, and WRITES below gives every write route one call that succeeds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, ROLES, World, build, login_all
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.settings import Settings
from tools.release import public_key as release_public_key
from tools.release import sign as release_sign

P, D, S, C, T, G, L = ROLES  # L: a learner, the student role (D28-O)
RELEASE_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"matrix release key").digest())
ALL = set(ROLES)
PUBLIC = "public"  # no token needed

EXPECTED: dict[tuple[str, str], set[str] | str] = {
    ("POST", "/api/v1/auth/token"): PUBLIC,
    ("GET", "/api/v1/auth/me"): ALL,
    ("GET", "/api/v1/people/{person_id}/export"): {P, S},
    ("POST", "/api/v1/people/{person_id}/erase"): {P, S},
    ("POST", "/api/v1/auth/logout"): ALL,
    ("GET", "/api/v1/users"): {P, S},
    ("POST", "/api/v1/users"): {P, S},
    ("GET", "/api/v1/regions"): {P, D},
    ("POST", "/api/v1/regions"): {P},
    ("GET", "/api/v1/regions/{region_id}"): {P, D},
    ("PATCH", "/api/v1/regions/{region_id}"): {P},
    ("DELETE", "/api/v1/regions/{region_id}"): {P},
    ("GET", "/api/v1/districts"): {P, D},
    ("POST", "/api/v1/districts"): {P},
    ("GET", "/api/v1/districts/{district_id}"): {P, D},
    ("PATCH", "/api/v1/districts/{district_id}"): {P},
    ("DELETE", "/api/v1/districts/{district_id}"): {P},
    ("GET", "/api/v1/schools"): {P, D, S, C, T},
    ("POST", "/api/v1/schools"): {P},
    ("GET", "/api/v1/schools/{school_id}"): {P, D, S, C, T},
    ("PATCH", "/api/v1/schools/{school_id}"): {P, S},
    ("GET", "/api/v1/classes"): {P, D, S},
    ("POST", "/api/v1/classes"): {P, S},
    ("GET", "/api/v1/classes/{class_id}"): {P, D, S},
    ("PATCH", "/api/v1/classes/{class_id}"): {P, S},
    ("DELETE", "/api/v1/classes/{class_id}"): {P, S},
    ("GET", "/api/v1/people"): {P, D, S, C, G},
    ("POST", "/api/v1/people"): {P, S},
    ("GET", "/api/v1/people/{person_id}"): {P, D, S, C, G},
    ("PATCH", "/api/v1/people/{person_id}"): {P, S},
    ("DELETE", "/api/v1/people/{person_id}"): {P, S},
    ("GET", "/api/v1/people/{person_id}/cards"): {P, S, G},
    ("POST", "/api/v1/people/{person_id}/cards"): {P, S},
    ("POST", "/api/v1/cards/{card_key}/revoke"): {P, S, G},
    ("GET", "/api/v1/people/{person_id}/guardians"): {P, S},
    ("POST", "/api/v1/people/{person_id}/guardians"): {P, S},
    ("POST", "/api/v1/guardians/{guardian_id}/invitations"): {P, S},
    ("DELETE", "/api/v1/people/{person_id}/guardians/{guardian_id}"): {P, S},
    ("GET", "/api/v1/people/{person_id}/eligibility"): {P, D, S, C, G},
    ("POST", "/api/v1/people/{person_id}/eligibility"): {P, S},
    ("GET", "/api/v1/people/{person_id}/restrictions"): {P, S, C, G},
    ("PUT", "/api/v1/people/{person_id}/restrictions"): {P, G},
    ("POST", "/api/v1/people/{person_id}/restrictions/confirm"): {P, S},  # D28-G
    ("POST", "/api/v1/people/{person_id}/restrictions/decline"): {P, S},
    ("GET", "/api/v1/devices"): {P, D, S, T},
    ("POST", "/api/v1/devices"): {P, S, T},
    ("GET", "/api/v1/devices/{device_id}"): {P, D, S, T},
    ("PATCH", "/api/v1/devices/{device_id}"): {P, S, T},
    ("DELETE", "/api/v1/devices/{device_id}"): {P, S, T},
    ("POST", "/api/v1/devices/{device_id}/claim-token"): {P, S, T},
    ("POST", "/api/v1/devices/{device_id}/revoke"): {P, S, T},
    # remote commands (D27-A): "open" is school admins' only, checked past the role gate
    ("POST", "/api/v1/devices/{device_id}/commands"): {P, S, T},
    ("GET", "/api/v1/devices/{device_id}/commands"): {P, D, S, T},
    ("POST", "/api/v1/provision"): PUBLIC,  # the claim token in the body is the credential
    ("GET", "/api/v1/devices/drift"): {P, D, S, T},
    ("GET", "/api/v1/whitelists/{school_id}"): {P, D, S, T},
    ("GET", "/api/v1/dishes"): {P, D, S, C, G, L},
    ("POST", "/api/v1/dishes"): {P, S},
    ("GET", "/api/v1/dishes/{dish_id}"): {P, D, S, C, G, L},
    ("PATCH", "/api/v1/dishes/{dish_id}"): {P, S},
    ("DELETE", "/api/v1/dishes/{dish_id}"): {P, S},
    ("PUT", "/api/v1/dishes/{dish_id}/photo"): {P, S},
    ("GET", "/media/dishes/{photo_name}"): PUBLIC,  # dish photos are not personal data (D28-D)
    ("PUT", "/api/v1/schools/{school_id}/menu/{day}"): {P, S, C},
    ("GET", "/api/v1/schools/{school_id}/menu"): {P, D, S, C, G, L},
    ("GET", "/api/v1/meal-categories"): {P, D, S, C, G, L},
    ("POST", "/api/v1/meal-categories"): {P, S},
    ("PATCH", "/api/v1/meal-categories/{category_id}"): {P, S},
    ("GET", "/api/v1/ratings"): {P, D, S, C, G, L},
    ("POST", "/api/v1/ratings"): {P, G, L},
    ("GET", "/api/v1/schools/{school_id}/ratings"): {P, S, C},  # weekly averages (D28-G)
    ("GET", "/api/v1/push/key"): ALL,
    ("GET", "/api/v1/me/push-subscriptions"): {S, G},
    ("POST", "/api/v1/me/push-subscriptions"): {S, G},
    ("DELETE", "/api/v1/me/push-subscriptions/{sub_id}"): {S, G},
    # signed webhooks (D29-I): a school's admins and those above it; hosts: above the school
    ("GET", "/api/v1/schools/{school_id}/webhook-hosts"): {P, D, S},
    ("PUT", "/api/v1/schools/{school_id}/webhook-hosts"): {P, D},
    ("GET", "/api/v1/schools/{school_id}/webhooks"): {P, D, S},
    ("POST", "/api/v1/schools/{school_id}/webhooks"): {P, D, S},
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret"): {P, D, S},
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): {P, D, S},
    ("GET", "/api/v1/consents"): {P, S, G},
    ("POST", "/api/v1/consents"): {P, S, G},
    ("POST", "/api/v1/consents/{consent_id}/withdraw"): {P, S, G},
    ("GET", "/api/v1/audit"): {P, S},
    ("POST", "/api/v1/schools/{school_id}/import"): {P, S},
    ("GET", "/api/v1/events"): {P, D, S, G, L},
    ("GET", "/api/v1/social-wallet/deliveries"): {P, D, S},
    ("GET", "/api/v1/social-wallet/summary"): {P, D, S},
    ("GET", "/api/v1/social-wallet/status"): {P, D, S},
    ("POST", "/api/v1/social-wallet/deliveries/{delivery_key}/resend"): {P, S},
    ("POST", "/api/v1/social-wallet/resend"): {P, S},
    ("GET", "/api/v1/reports"): {P, D, S},
    ("GET", "/api/v1/reports/schools/{school_id}/meals"): {P, D, S},
    ("GET", "/api/v1/reports/schools/{school_id}/attendance"): {P, D, S},
    ("GET", "/api/v1/reports/schools/{school_id}/crosscheck"): {P, D, S},
    ("GET", "/api/v1/reports/schools/{school_id}/anomalies"): {P, D, S},
    ("POST", "/api/v1/reports/schools/{school_id}/generate"): {P, S},
    ("POST", "/api/v1/reports/schools/{school_id}/approve"): {P, S},
    ("GET", "/api/v1/reports/districts/{district_id}/meals"): {P, D},
    ("POST", "/api/v1/people/{person_id}/balance/top-up"): {P, S},
    ("POST", "/api/v1/people/{person_id}/balance/refund"): {P, S},
    ("POST", "/api/v1/people/{person_id}/balance/correction"): {P, S},
    ("GET", "/api/v1/people/{person_id}/balance"): {P, S, C, G, L},
    ("GET", "/api/v1/people/{person_id}/ledger"): {P, S, G, L},
    # OTA (D27-B): releases and rollouts are the platform's; the fleet view is scoped like devices
    ("POST", "/api/v1/ota/releases"): {P},
    ("GET", "/api/v1/ota/releases"): {P},
    ("POST", "/api/v1/ota/rollouts"): {P},
    ("GET", "/api/v1/ota/rollouts/{rollout_id}"): {P},
    ("POST", "/api/v1/ota/rollouts/{rollout_id}/pause"): {P},
    ("POST", "/api/v1/ota/rollouts/{rollout_id}/resume"): {P},
    ("POST", "/api/v1/ota/rollouts/{rollout_id}/cancel"): {P},
    ("GET", "/api/v1/ota/fleet"): {P, D, S, T},
    # a school's learning resources, the student app's "Learning" tab (D28-O)
    ("GET", "/api/v1/schools/{school_id}/learning"): {P, D, S, L},
    ("PUT", "/api/v1/schools/{school_id}/learning"): {P, S},
    ("GET", "/healthz"): PUBLIC,
}

# The console's pages (cookie sessions with a CSRF check, not bearer tokens): their role and
# scope matrix is tests/console/test_console_pages.py. Listed so a new route needs a decision.
CONSOLE_ROUTES = {
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/password"),
    ("POST", "/password"),
    ("POST", "/lang"),
    ("GET", "/today"),
    ("GET", "/live"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/static/{name:path}"),
    # guardian invitations and the parents' app (D27-F): tests/console/test_app_pages.py
    ("GET", "/guardians"),
    ("POST", "/guardians/{guardian_id}/invitation"),
    ("GET", "/app"),
    ("GET", "/app/"),
    ("GET", "/app/{lang}/"),
    ("GET", "/app/{lang}/offline"),
    ("GET", "/app/{lang}/login"),
    ("POST", "/app/{lang}/login"),
    ("POST", "/app/{lang}/logout"),
    ("POST", "/app/{lang}/language"),
    ("GET", "/app/{lang}/manifest.webmanifest"),
    ("GET", "/app/invite/{token}"),
    ("POST", "/app/invite/{token}"),
    ("GET", "/app/push/key"),
    ("POST", "/app/push/subscriptions"),
    # the app's menu, ratings and allergies (D28-G): tests/console/test_app_menu_pages.py
    ("GET", "/app/{lang}/menu"),
    ("GET", "/app/{lang}/rate"),
    ("POST", "/app/{lang}/rate"),
    ("GET", "/app/{lang}/restrictions"),
    ("POST", "/app/{lang}/restrictions"),
    ("GET", "/restrictions"),  # the console's side: tests/console/test_app_menu_console.py
    ("POST", "/restrictions/{person_id}/confirm"),
    ("POST", "/restrictions/{person_id}/decline"),
    ("GET", "/ratings"),
    # the app's money, statistics and settings (D28-H): tests/console/test_app_money_pages.py
    ("GET", "/app/{lang}/money"),
    ("GET", "/app/{lang}/stats"),
    ("GET", "/app/{lang}/settings"),
    ("POST", "/app/{lang}/settings"),
    ("POST", "/app/{lang}/consents/{consent_id}/withdraw"),
    ("GET", "/sw.js"),
    # the menu planner and dish catalogue (D28-D): tests/console/test_menu_pages.py
    ("GET", "/menu"),
    ("GET", "/menu/day/{day}"),
    ("POST", "/menu/day/{day}"),
    ("POST", "/menu/copy"),
    ("GET", "/menu/dishes"),
    ("POST", "/menu/dishes"),
    ("GET", "/menu/dishes/{dish_id}"),
    ("POST", "/menu/dishes/{dish_id}"),
    # the fleet (D28-E): tests/console/test_fleet_pages.py
    ("GET", "/fleet"),
    ("GET", "/fleet/new"),
    ("POST", "/fleet/new"),
    ("GET", "/fleet/{device_id}"),
    ("POST", "/fleet/{device_id}/commands"),
    ("POST", "/fleet/{device_id}/claim-token"),
    ("POST", "/fleet/{device_id}/revoke"),
    ("POST", "/fleet/{device_id}/delete"),
    # people and cards (D28-A): tests/console/test_people_pages.py
    ("GET", "/people"),
    ("GET", "/people/{person_id}"),
    ("POST", "/people/{person_id}/cards"),
    ("POST", "/people/{person_id}/cards/{card_key}/revoke"),
    ("POST", "/people/{person_id}/enrol-tap"),
    ("GET", "/people/{person_id}/enrol-tap/{enrolment_id}"),
    ("POST", "/people/{person_id}/enrol-tap/{enrolment_id}/confirm"),
    # Reports, Social Wallet, Audit (D28-F): tests/console/test_reports_pages.py and
    # test_wallet_audit_pages.py
    ("GET", "/reports"),
    ("POST", "/reports/generate"),
    ("POST", "/reports/acknowledge"),
    ("POST", "/reports/approve"),
    ("GET", "/reports/download"),
    ("GET", "/social-wallet"),
    ("POST", "/social-wallet/resend"),
    ("POST", "/social-wallet/reprice"),
    ("GET", "/audit"),
    # the import wizard, forgot password, invitations by e-mail (D28-B):
    # tests/console/test_import_wizard.py and test_email_reset.py
    ("GET", "/import"),
    ("POST", "/import/check"),
    ("POST", "/import/apply"),
    ("GET", "/import/{upload_id}"),
    ("GET", "/forgot"),
    ("POST", "/forgot"),
    ("GET", "/app/{lang}/forgot"),
    ("POST", "/app/{lang}/forgot"),
    ("GET", "/reset/{token}"),
    ("POST", "/reset/{token}"),
    ("POST", "/guardians/{guardian_id}/invitation/email"),
    # the student's account and app (D28-O): tests/console/test_student_app.py
    ("POST", "/people/{person_id}/student-code"),
    ("GET", "/app/{lang}/code"),
    ("POST", "/app/{lang}/code"),
    ("GET", "/app/{lang}/learning"),
    # a person's data export, deactivation and erasure on their page (D29-B):
    # tests/console/test_subject_data_pages.py
    ("POST", "/people/{person_id}/export"),
    ("POST", "/people/{person_id}/deactivate"),
    ("POST", "/people/{person_id}/erase"),
    # a pupil's password set by the school, a class's code slips, the Learning list (D29-E):
    # tests/console/test_pupil_access_pages.py
    ("POST", "/people/{person_id}/student-password"),
    ("GET", "/student-slips"),
    ("POST", "/student-slips"),
    ("GET", "/learning"),
    ("POST", "/learning"),
    # the OpenID Connect provider (D29-F, docs/sso.md): its protocol endpoints authenticate
    # clients and bearer tokens of their own; its pages and the registration page (platform
    # admins only): tests/oidc/
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/oidc/jwks"),
    ("POST", "/oidc/token"),
    ("GET", "/oidc/userinfo"),
    ("POST", "/oidc/userinfo"),
    ("GET", "/oidc/authorize"),
    ("POST", "/oidc/authorize"),
    ("GET", "/oidc/login"),
    ("POST", "/oidc/login"),
    ("GET", "/oidc/logout"),
    ("POST", "/oidc/logout"),
    ("GET", "/sso"),
    ("POST", "/sso"),
    ("POST", "/sso/{client_id}/disable"),
    ("POST", "/sso/schools"),
    ("POST", "/sso/schools/remove"),
    ("GET", "/app/{lang}/platforms"),
    ("POST", "/app/{lang}/platforms/withdraw"),
    # signed webhooks (D29-I): tests/integrations/test_webhook_pages.py
    ("GET", "/webhooks"),
    ("POST", "/webhooks"),
    ("POST", "/webhooks/hosts"),
    ("POST", "/webhooks/{webhook_id}/rotate"),
    ("POST", "/webhooks/{webhook_id}/delete"),
    # the platforms' read API (D29-I): machine clients with tokens of their own (OAuth2 client
    # credentials), never user sessions: tests/integrations/test_platform_api.py
    ("POST", "/api/v1/platform/token"),
    ("GET", "/api/v1/platform/schools/{school_id}/attendance"),
    ("GET", "/api/v1/platform/schools/{school_id}/meals"),
    # their registration by a platform admin (D29-I): tests/integrations/
    # test_platform_clients_browser.py
    ("GET", "/platform-clients"),
    ("POST", "/platform-clients"),
    ("POST", "/platform-clients/{client_id}/disable"),
    # entry without a card, QR code and PIN (D29-J): guardians and students, their own child or
    # themself: tests/altid/test_altid_app.py
    ("GET", "/app/{lang}/entry"),
    ("GET", "/app/{lang}/entry/code"),
    ("POST", "/app/{lang}/entry/consent"),
    ("POST", "/app/{lang}/entry/pin"),
}


def _walk(routes: list[Any]) -> Iterator[tuple[str, str]]:
    for r in routes:
        if isinstance(r, APIRoute):
            yield from ((m, r.path) for m in sorted(r.methods))
        elif hasattr(r, "original_router"):  # FastAPI >= 0.160 keeps included routers nested
            yield from _walk(r.original_router.routes)


def _routes() -> list[tuple[str, str]]:
    """Every route of the app: walked from app.routes, plus every operation in the OpenAPI
    document (in case the walk misses a kind of route)."""
    app = create_app(Settings(database_url="postgresql://unused/x", auth_required=True))
    found = set(_walk(app.routes))
    for path, ops in app.openapi()["paths"].items():
        found.update((m.upper(), path) for m in ops)
    assert len(found) > 50, found
    return sorted(found)


def test_every_route_has_an_entry() -> None:
    routes = _routes()
    missing = [r for r in routes if r not in EXPECTED and r not in CONSOLE_ROUTES]
    stale = [k for k in [*EXPECTED, *CONSOLE_ROUTES] if k not in routes]
    assert not missing, f"routes without an authorisation entry: {missing}"
    assert not stale, f"entries for routes that no longer exist: {stale}"


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    w.ids["sub_id"] = 1  # no such push subscription: an allowed role gets 404, past the gate
    w.ids["webhook_id"] = 1  # no such webhook subscriber yet: 404 likewise
    w.ids["delivery_key"] = "meal:none:1:1"  # no such Social Wallet delivery: 404 likewise
    w.ids["day"] = (date.today() + timedelta(days=2)).isoformat()  # a menu day ahead
    w.ids["rollout_id"] = 1  # no such rollout yet: an allowed role gets 404, past the gate
    w.ids["photo_name"] = "0" * 32 + ".jpg"  # no such dish photo: 404 for everyone
    s = Settings(database_url=database_url, auth_required=True,
                 ota_public_key=release_public_key(RELEASE_KEY))  # fmt: skip
    with TestClient(create_app(s)) as c:
        login_all(c, w, database_url)
        yield c, w


def _order(key: tuple[str, str]) -> tuple[int, str, str]:
    # destructive calls last, logout (which ends the token) at the very end
    method, path = key
    rank = (
        2
        if path.endswith("/logout")
        else 1
        if method == "DELETE" or path.endswith(("/revoke", "/withdraw"))
        else 0
    )
    return rank, path, method


def _audit_rows(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    assert row is not None
    return int(row[0])


def test_role_matrix(world: tuple[TestClient, World], database_url: str) -> None:
    """Every route x every role (and anonymous): the role gate as EXPECTED says, never a 5xx,
    and every non-GET call that succeeds (2xx) leaves at least one new audit_log row."""
    client, w = world
    failures: list[str] = []
    calls = 0
    db = psycopg.connect(database_url, autocommit=True)
    for method, path in sorted(EXPECTED, key=_order):
        allowed = EXPECTED[(method, path)]
        url = re.sub(r"\{(\w+)\}", lambda m: str(w.ids[m.group(1)]), path)
        body = {} if method in ("POST", "PUT", "PATCH") and "token" not in path else None
        # anonymous
        r = client.request(method, url, json=body)
        if allowed != PUBLIC and r.status_code != 401:
            failures.append(f"anonymous {method} {path}: {r.status_code}, expected 401")
        if allowed == PUBLIC and r.status_code in (401, 403):
            failures.append(f"anonymous {method} {path}: {r.status_code} on a public route")
        # platform admin last: it is allowed everything and changes the most
        for role in sorted(ROLES, key=lambda x: x == P):
            audited = _audit_rows(db)
            r = client.request(method, url, json=body, headers=w.auth(role))
            calls += 1
            ok = allowed == PUBLIC or role in allowed
            # An empty PATCH changes nothing, so it has nothing to audit.
            no_op = method == "PATCH" and body == {}
            if method != "GET" and 200 <= r.status_code < 300 and not no_op:
                if _audit_rows(db) <= audited:
                    failures.append(f"{role} {method} {path}: {r.status_code}, no audit_log row")
            if r.status_code >= 500:
                failures.append(f"{role} {method} {path}: {r.status_code} {r.text[:200]}")
            elif ok and r.status_code in (401, 403):
                failures.append(f"{role} {method} {path}: {r.status_code}, expected allowed")
            elif not ok and r.status_code != 403:
                failures.append(f"{role} {method} {path}: {r.status_code}, expected 403")
    db.close()
    assert calls == len(EXPECTED) * len(ROLES)
    assert not failures, "\n".join(failures)


def test_bad_and_expired_tokens_are_401(world: tuple[TestClient, World], database_url: str) -> None:
    import psycopg

    client, w = world
    for header in ("Bearer nope", "Bearer " + "x" * 500, "Basic abc", "Bearer "):
        r = client.get("/api/v1/people", headers={"Authorization": header})
        assert r.status_code == 401, (header, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/people", headers=w.auth(S)).status_code == 200
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
    assert client.get("/api/v1/people", headers=w.auth(S)).status_code == 401


# ---- every write route is audited ----------------------------------------------------------
# test_role_matrix sends empty bodies, so most write routes answer 422 there and would never
# show whether they audit. Here each write route gets one call that succeeds, in order (later
# calls use what earlier ones created), and must add at least one audit_log row (D8: every
# change through the API is audited). A write route missing from WRITES fails the test, like a
# route missing from EXPECTED.
@dataclass(frozen=True)
class Write:
    role: str | None  # None: no token (the public routes)
    method: str
    route: str  # exactly as in EXPECTED
    json: Any = None
    at: dict[str, str] = field(default_factory=dict)  # path parameter -> name in ids
    save: tuple[str, str] | None = None  # (name in ids, field of the answer)
    audited: bool = True  # False only for a call that changes nothing by design
    extra: dict[str, Any] = field(default_factory=dict)  # params, data, files, headers


def _pupils_csv() -> bytes:
    from cloud.imports import iin

    return f"full_name,iin,class\nNur Nurov,{iin.make(date(2010, 3, 14), 1)},5A\n".encode()


def _dish_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


def _push_subscription() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from cloud.push.webpush import b64url

    point = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = point.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return {
        "endpoint": "https://fcm.googleapis.com/fcm/send/matrix-1",
        "keys": {"p256dh": b64url(raw), "auth": b64url(bytes(range(16)))},
    }


PUPIL, CLASS, DISH = {"person_id": "pupil"}, {"class_id": "new_class"}, {"dish_id": "new_dish"}
REGION, DISTRICT = {"region_id": "new_region"}, {"district_id": "new_district"}
DEVICE, GUARDIAN = {"device_id": "new_device"}, {"person_id": "pupil", "guardian_id": "dad"}
ROLLOUT = {"rollout_id": "new_rollout"}
CSV = {"files": {"file": ("pupils.csv", _pupils_csv(), "text/csv")}}
PHOTO = {"photo": ("plov.png", _dish_png(), "image/png")}
DRY, REAL = {"kind": "students", "dry_run": "true"}, {"kind": "students", "dry_run": "false"}


def _key(n: int) -> dict[str, Any]:
    return {"headers": {"Idempotency-Key": f"matrix-{n}"}}


# fmt: off
WRITES: list[Write] = [
    Write(None, "POST", "/api/v1/auth/token",
          extra={"data": {"username": "root@qadam.kz", "password": PASSWORD}}),
    Write(S, "POST", "/api/v1/users",
          {"email": "dad@qadam.kz", "password": "long enough pw", "role": "guardian"},
          save=("dad", "id")),
    Write(P, "POST", "/api/v1/regions", {"name": "Abai"}, save=("new_region", "id")),
    Write(P, "PATCH", "/api/v1/regions/{region_id}", {"name": "Abay"}, at=REGION),
    Write(P, "POST", "/api/v1/districts", {"region_id": "{new_region}", "name": "Semey"},
          save=("new_district", "id")),
    Write(P, "PATCH", "/api/v1/districts/{district_id}", {"name": "Semei"}, at=DISTRICT),
    Write(P, "POST", "/api/v1/schools", {"id": "s9", "name": "School 9"}),
    Write(S, "PATCH", "/api/v1/schools/{school_id}", {"name": "School One"}),
    Write(S, "PUT", "/api/v1/schools/{school_id}/learning",
          {"resources": [{"title": "Bilimland", "url": "https://bilimland.kz/"}]}),
    Write(S, "POST", "/api/v1/classes", {"school_id": "s1", "name": "6B"},
          save=("new_class", "id")),
    Write(S, "PATCH", "/api/v1/classes/{class_id}", {"grade": 6}, at=CLASS),
    Write(S, "POST", "/api/v1/people",
          {"school_id": "s1", "kind": "student", "full_name": "Dana Dauletova"},
          save=("pupil", "id")),
    Write(S, "PATCH", "/api/v1/people/{person_id}", {"full_name": "Dana Daulet"}, at=PUPIL),
    Write(S, "POST", "/api/v1/people/{person_id}/cards", {"uid": "04A1B2C3"}, at=PUPIL),
    Write(S, "POST", "/api/v1/cards/{card_key}/revoke", {"reason": "lost"}),
    Write(S, "POST", "/api/v1/people/{person_id}/guardians", {"guardian_id": "{dad}"}, at=PUPIL),
    Write(S, "POST", "/api/v1/guardians/{guardian_id}/invitations"),
    Write(S, "DELETE", "/api/v1/people/{person_id}/guardians/{guardian_id}", at=GUARDIAN),
    Write(S, "POST", "/api/v1/people/{person_id}/eligibility",
          {"category_id": "{category_id}", "valid_from": "2025-09-01"}),
    Write(G, "PUT", "/api/v1/people/{person_id}/restrictions", {"allergens": ["milk"]}),
    Write(S, "POST", "/api/v1/people/{person_id}/restrictions/confirm", {"allergens": ["milk"]}),
    Write(G, "PUT", "/api/v1/people/{person_id}/restrictions", {"allergens": []}),  # waits
    Write(S, "POST", "/api/v1/people/{person_id}/restrictions/decline", {"allergens": []}),
    Write(T, "POST", "/api/v1/devices",
          {"id": "door-9", "school_id": "s1", "mode": "door", "direction": "in"},
          save=("new_device", "id")),
    Write(T, "PATCH", "/api/v1/devices/{device_id}", {"direction": "out"}, at=DEVICE),
    Write(T, "DELETE", "/api/v1/devices/{device_id}", at=DEVICE),
    Write(T, "POST", "/api/v1/devices/{device_id}/claim-token", save=("claim", "token")),
    Write(None, "POST", "/api/v1/provision", {"device": "gate-1", "token": "{claim}"}),
    Write(T, "POST", "/api/v1/devices/{device_id}/revoke"),
    Write(S, "POST", "/api/v1/dishes",
          {"school_id": "s1", "name_kk": "Сорпа", "name_ru": "Суп", "price": "300"},
          save=("new_dish", "id")),
    Write(S, "PATCH", "/api/v1/dishes/{dish_id}", {"price": "320"}, at=DISH),
    Write(S, "PUT", "/api/v1/dishes/{dish_id}/photo", at=DISH, extra={"files": PHOTO}),
    Write(S, "DELETE", "/api/v1/dishes/{dish_id}", at=DISH),
    Write(C, "PUT", "/api/v1/schools/{school_id}/menu/{day}", {"periods": {"lunch": "{set}"}}),
    Write(T, "POST", "/api/v1/devices/{device_id}/commands", {"cmd": "diag"}),
    Write(S, "POST", "/api/v1/meal-categories",
          {"school_id": "s1", "kind": "paid", "name": "Paid", "price": "650"}),
    Write(S, "PATCH", "/api/v1/meal-categories/{category_id}", {"name": "Free meals"}),
    Write(G, "POST", "/api/v1/ratings",
          {"person_id": "{alice}", "dish_id": "{dish_id}", "served_on": "2025-10-09", "score": 5}),
    Write(G, "POST", "/api/v1/me/push-subscriptions", "{push_subscription}", save=("sub", "id")),
    Write(G, "DELETE", "/api/v1/me/push-subscriptions/{sub_id}", at={"sub_id": "sub"}),
    Write(D, "PUT", "/api/v1/schools/{school_id}/webhook-hosts", {"hosts": ["hooks.example.kz"]}),
    Write(S, "POST", "/api/v1/schools/{school_id}/webhooks",
          {"url": "https://hooks.example.kz/qadam", "events": ["passage"]},
          save=("new_webhook", "id")),
    Write(S, "POST", "/api/v1/webhooks/{webhook_id}/rotate-secret",
          at={"webhook_id": "new_webhook"}),
    Write(S, "DELETE", "/api/v1/webhooks/{webhook_id}", at={"webhook_id": "new_webhook"}),
    Write(G, "POST", "/api/v1/consents", {"person_id": "{alice}", "method": "palm"},
          save=("new_consent", "id")),
    Write(G, "POST", "/api/v1/consents/{consent_id}/withdraw", at={"consent_id": "new_consent"}),
    # A dry run is read-only by design (the route makes its transaction read-only): no row.
    Write(S, "POST", "/api/v1/schools/{school_id}/import", audited=False,
          extra={"params": DRY, **CSV}),
    Write(S, "POST", "/api/v1/schools/{school_id}/import", extra={"params": REAL, **CSV}),
    Write(S, "POST", "/api/v1/reports/schools/{school_id}/generate",
          {"month": "2025-10", "kind": "attendance"}),
    Write(S, "POST", "/api/v1/reports/schools/{school_id}/approve",
          {"month": "2025-10", "kind": "attendance", "acknowledge_anomalies": True}),
    Write(S, "POST", "/api/v1/social-wallet/deliveries/{delivery_key}/resend",
          at={"delivery_key": "rejected_meal"}),
    Write(S, "POST", "/api/v1/social-wallet/resend", {"school": "s1", "state": "dead"}),
    Write(S, "POST", "/api/v1/people/{person_id}/balance/top-up",
          {"amount": "1000", "reason": "cash at the office"}, extra=_key(1)),
    Write(S, "POST", "/api/v1/people/{person_id}/balance/refund",
          {"amount": "50", "charge_id": "{charge}", "reason": "cold soup"}, extra=_key(2)),
    Write(S, "POST", "/api/v1/people/{person_id}/balance/correction",
          {"amount": "-0.50", "reason": "rounding"}, extra=_key(3)),
    Write(P, "POST", "/api/v1/ota/releases", "{release}"),
    Write(P, "POST", "/api/v1/ota/rollouts", {"version": "9.0.0", "devices": ["gate-2"]},
          save=("new_rollout", "id")),
    Write(P, "POST", "/api/v1/ota/rollouts/{rollout_id}/pause", {"reason": "matrix"}, at=ROLLOUT),
    Write(P, "POST", "/api/v1/ota/rollouts/{rollout_id}/resume", at=ROLLOUT),
    Write(P, "POST", "/api/v1/ota/rollouts/{rollout_id}/cancel", {"reason": "matrix"}, at=ROLLOUT),
    Write(S, "DELETE", "/api/v1/people/{person_id}", at=PUPIL),
    Write(S, "POST", "/api/v1/people/{person_id}/erase", at=PUPIL),  # once deactivated
    Write(S, "DELETE", "/api/v1/classes/{class_id}", at=CLASS),
    Write(P, "DELETE", "/api/v1/districts/{district_id}", at=DISTRICT),
    Write(P, "DELETE", "/api/v1/regions/{region_id}", at=REGION),
    Write(G, "POST", "/api/v1/auth/logout"),
]
# fmt: on


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    """Replace a "{name}" value by ids[name] (keeping its type), in dicts too."""
    if isinstance(value, str) and re.fullmatch(r"\{\w+\}", value):
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def test_every_write_route_succeeds_once_and_is_audited(
    world: tuple[TestClient, World], database_url: str
) -> None:
    client, w = world
    writes = {(m, p) for m, p in EXPECTED if m != "GET"}
    covered = {(x.method, x.route) for x in WRITES if x.audited}
    assert writes - covered == set(), "write routes without a call in WRITES"
    assert covered - writes == set(), "WRITES names routes that do not exist"
    signed = release_sign(RELEASE_KEY, "9.0.0", bytes(range(256)) * 8)
    release = {k: signed[k] for k in ("version", "image_b64", "sha256", "signature")}
    ids = dict(w.ids, push_subscription=_push_subscription(), set=[w.ids["dish_id"]],
               release=release)  # fmt: skip
    with psycopg.connect(database_url, autocommit=True) as db:
        ids["charge"] = db.execute(  # a meal charge for the refund
            "SELECT entry_id FROM ledger_post(%s, 'charge', -200, 'meal', NULL, 'matrix:1')",
            (w.ids["alice"],),
        ).fetchone()[0]  # type: ignore[index]
        db.execute(  # a meal record the Social Wallet rejected, for the resend
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id, meal_category,"
            " occurred_at, day) VALUES ('cant-m', 1, 1, 's1', %s, 1, now(), current_date)",
            (w.ids["alice"],),
        )
        db.execute("UPDATE sw_deliveries SET state = 'rejected', confirmed_at = now()")
        db.execute(  # the dish the rating rates was served that day (D28-G)
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id, occurred_at,"
            " day, dish_id) VALUES ('cant-r', 1, 1, 's1', %s, '2025-10-09T06:00:00Z',"
            " '2025-10-09', %s)",
            (w.ids["alice"], w.ids["dish_id"]),
        )
        ids["rejected_meal"] = "meal:cant-m:1:1"
        failures = []
        for x in WRITES:
            names = {p: ids[x.at.get(p, p)] for p in re.findall(r"\{(\w+)\}", x.route)}
            url = x.route.format(**names)
            extra = dict(x.extra)
            headers = {**extra.pop("headers", {}), **(w.auth(x.role) if x.role else {})}
            before = _audit_rows(db)
            r = client.request(x.method, url, json=_fill(x.json, ids), headers=headers, **extra)
            added = _audit_rows(db) - before
            case = f"{x.role} {x.method} {url}: {r.status_code} {r.text[:200]}"
            if not 200 <= r.status_code < 300:
                failures.append("did not succeed: " + case)
                continue
            if x.save:
                ids[x.save[0]] = r.json()[x.save[1]]
            if x.audited and added < 1:
                failures.append("no audit_log row: " + case)
            if not x.audited and added:
                failures.append("audited a call that should change nothing: " + case)
    assert not failures, "\n".join(failures)
