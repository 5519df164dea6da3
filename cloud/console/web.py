"""The console's template environment and its mounting into the API app (D27-E)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from cloud.auth.principal import Principal
from cloud.console import app_nav, i18n, static
from cloud.console.guard import LANG_COOKIE, NotForRole, SignInNeeded

TEMPLATES = Path(__file__).resolve().parent / "templates"

env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
i18n.install(env)
env.globals["static"] = static.url
env.globals["APP_TABS"] = app_nav.tabs
env.globals["LANGUAGES"] = [(code, i18n.NAMES[code]) for code in i18n.LANGUAGES]
templates = Jinja2Templates(env=env)


def language(request: Request, user_locale: str | None = None) -> str:
    return i18n.pick(
        user_locale,
        request.cookies.get(LANG_COOKIE),
        accept_language=request.headers.get("accept-language", ""),
    )


def render(
    request: Request,
    name: str,
    lang: str,
    status_code: int = 200,
    user: Principal | None = None,
    **ctx: Any,
) -> HTMLResponse:
    """A page (htmx swaps pick their part of it with hx-select)."""
    context = {"locale": lang, "user": user, "path": request.url.path, **ctx}
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Vary"] = "HX-Request, HX-Request-Type, Cookie, Accept-Language"
    response.headers["Cache-Control"] = "no-store"  # pages hold pupils' names
    response.headers["Content-Language"] = lang
    # no page of ours is framed (clickjacking) or leaks its URL (filters, names) to another site
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if len(response.body) > 1024 and "gzip" in request.headers.get("accept-encoding", ""):
        response.body = gzip.compress(response.body, compresslevel=6)
        response.headers["Content-Encoding"] = "gzip"
        response.headers["Content-Length"] = str(len(response.body))
        response.headers["Vary"] += ", Accept-Encoding"
    return response


def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInNeeded)
    return RedirectResponse(f"/login?next={exc.next_url}", status_code=303)


def _not_for_role(request: Request, exc: Exception) -> Response:
    lang = language(request)
    return render(request, "refused.html", lang, status_code=403)


def install(app: FastAPI) -> None:
    from cloud.console import account, apidocs, app_pages, pages

    app.add_exception_handler(SignInNeeded, _sign_in)
    app.add_exception_handler(NotForRole, _not_for_role)
    app.include_router(account.router)
    app.include_router(pages.router)
    app.include_router(apidocs.router)
    app_pages.install(app)  # the parents' app and guardian invitations (D27-F)
    from cloud.console import people as people_pages  # noqa: I001 (D28-A: people, cards)

    people_pages.install(app)
    from cloud.console import audit_page, reports_pages, wallet_pages  # noqa: I001 (D28-F)

    app.include_router(reports_pages.router)
    app.include_router(wallet_pages.router)
    app.include_router(audit_page.router)
    from cloud.console import importer, password_reset  # noqa: I001 (D28-B)

    app.include_router(importer.router)  # the import wizard (D28-B)
    password_reset.install(app)  # forgot password, e-mailed invitations (D28-B)
    from cloud.console import app_menu  # noqa: I001 (D28-G: the app's menu, ratings, allergies)

    app_menu.install(app)
    from cloud.console import app_money  # noqa: I001 (D28-H: the app's money, stats, settings)

    app.include_router(app_money.router)
    from cloud.console import app_altid  # noqa: I001 (D29-J: entry without a card, QR and PIN)

    app.include_router(app_altid.router)
    from cloud.console import fleet  # noqa: I001 (D28-E: the fleet, a board's page, register)

    app.include_router(fleet.router)
    from cloud.console import menu_planner  # noqa: I001 (D28-D: the menu planner, dishes)

    app.include_router(menu_planner.router)
    from cloud.console import student_access  # noqa: I001 (D28-O: student codes, Learning)

    student_access.install(app)
