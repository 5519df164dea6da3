"""What makes the parents' app an installable web app (D27-F): its manifest, its service worker
at a fixed ``/sw.js``, and the push subscription the app's page makes through the worker with
the server's VAPID key. The subscription is stored by the API's own functions
(cloud/push/subscriptions.py), for the guardian of the app's session cookie."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from cloud.api.deps import ConnDep, SettingsDep
from cloud.api.models import Input
from cloud.api.push import KeysIn
from cloud.auth.principal import Principal
from cloud.console import i18n, static
from cloud.console.guard import check_csrf, session_user
from cloud.console.i18n import N_
from cloud.push import subscriptions
from cloud.push.subscriptions import EndpointPolicy

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
SERVICE_WORKER = Path(__file__).resolve().parent / "static" / "sw.js"
APP_NAME = N_("qadam for parents")
APP_DESCRIPTION = N_("Your child's arrivals, departures and meals, with the exact time.")


@router.get("/app/{lang}/manifest.webmanifest")
def manifest(lang: str) -> Response:
    """One manifest per language (its name and start page are the language's)."""
    if lang not in i18n.LANGUAGES:
        return Response(status_code=404)
    doc = {
        "name": i18n.gettext(lang, APP_NAME),
        "short_name": "qadam",
        "description": i18n.gettext(lang, APP_DESCRIPTION),
        "lang": lang,
        "id": "/app/",
        "start_url": f"/app/{lang}/",
        "scope": "/app/",
        "display": "standalone",
        "background_color": "#f6f8fa",
        "theme_color": "#0b5394",
        "icons": [
            {"src": static.url("app-icon-192.png"), "sizes": "192x192", "type": "image/png"},
            {"src": static.url("app-icon-512.png"), "sizes": "512x512", "type": "image/png"},
            {"src": static.url("app-icon-512.png"), "sizes": "512x512", "type": "image/png",
             "purpose": "maskable"},
        ],
    }  # fmt: skip
    return Response(json.dumps(doc, ensure_ascii=False), media_type="application/manifest+json",
                    headers={"Cache-Control": "no-cache"})  # fmt: skip


@router.get("/sw.js")
def service_worker() -> Response:
    """At the site's root, so its scope may be /app/; never cached by HTTP (a new worker must
    be seen at the next visit: the browser compares it byte for byte)."""
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return Response(SERVICE_WORKER.read_bytes(), media_type="text/javascript", headers=headers)


def _guardian(request: Request, conn: ConnDep) -> Principal | None:
    user = session_user(request, conn)
    return user if user is not None and user.role == "guardian" else None


@router.get("/app/push/key")
def push_key(request: Request, conn: ConnDep, settings: SettingsDep) -> Response:
    if _guardian(request, conn) is None:
        return JSONResponse({"detail": "sign in"}, status_code=401)
    if not settings.push_vapid_key_file:
        return JSONResponse({"detail": "web push is not configured"}, status_code=404)
    from cloud.push.webpush import VapidKey

    pem = Path(settings.push_vapid_key_file).read_bytes()
    key = VapidKey(pem, settings.push_vapid_subject or "")
    return JSONResponse({"application_server_key": key.application_server_key},
                        headers={"Cache-Control": "no-store"})  # fmt: skip


class AppSubscriptionIn(Input):
    """The browser's PushSubscription.toJSON() and the app's language."""

    endpoint: str = Field(min_length=8, max_length=2048)
    expirationTime: int | None = Field(default=None, ge=0)  # noqa: N815 (the W3C field name)
    keys: KeysIn
    lang: Literal["kk", "ru", "en"] | None = None  # None: the account's (pushsubscriptionchange)


@router.post("/app/push/subscriptions")
def push_subscribe(
    request: Request, conn: ConnDep, settings: SettingsDep, body: AppSubscriptionIn
) -> Response:
    user = _guardian(request, conn)
    if user is None:
        return JSONResponse({"detail": "sign in"}, status_code=401)
    policy = EndpointPolicy(settings.push_endpoint_hosts, settings.push_allow_http_loopback)
    endpoint = subscriptions.check_endpoint(body.endpoint, policy)
    point, secret = subscriptions.decode_keys(body.keys.p256dh, body.keys.auth)
    lang: str = body.lang or ""
    if not lang:
        got = conn.execute("SELECT locale FROM users WHERE id = %s", (user.user_id,)).fetchone()
        lang = str(got[0]) if got and got[0] else i18n.DEFAULT
    row = subscriptions.upsert(conn, user, endpoint, point, secret, lang)
    return JSONResponse({"id": row["id"], "lang": row["lang"]}, status_code=201)
