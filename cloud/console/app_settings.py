"""The parents' app's settings page (issue #16, D28-H): the guardian's notification settings
(which kinds, quiet hours; obeyed by the push path, cloud/push/preferences.py) and the child's
consents to alternative identification with the date and who gave them, each withdrawable
through the API's own route function (cloud/api/consents.py: scope, audit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.consents import list_consents, withdraw_consent
from cloud.api.deps import ConnDep, PageParams
from cloud.console import app_child, app_nav, i18n
from cloud.console.app_pages import Child, Guardian, exact
from cloud.console.guard import check_csrf
from cloud.console.i18n import N_
from cloud.console.web import render
from cloud.domain import store
from cloud.domain.errors import Conflict, NotFound
from cloud.push import preferences

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
app_nav.register("settings", N_("Settings"), 90)
ChildQuery = Annotated[int | None, Query(ge=1, le=2**63 - 1)]
ChildForm = Annotated[int | None, Form(ge=1, le=2**63 - 1)]
METHOD_NAMES = {"face": N_("face recognition"), "fingerprint": N_("fingerprint"),
                "palm": N_("palm scan"), "qr": N_("QR code"), "pin": N_("PIN code")}  # fmt: skip


@dataclass(frozen=True)
class ConsentLine:
    id: int
    method: str
    granted: str
    granted_iso: str
    by: str
    withdrawn: str | None


def _consents(conn: Any, user: Any, shown: Child, lang: str) -> list[ConsentLine]:
    page = list_consents(conn, user, PageParams(100, 0), person=shown.id, live=None)
    names = dict(conn.execute(
        "SELECT id, full_name FROM users WHERE id = ANY(%s)",
        (list({c.granted_by for c in page.items}),),
    ).fetchall())  # fmt: skip

    def who(uid: int) -> str:
        if uid == user.user_id:
            return i18n.gettext(lang, N_("you"))
        return names.get(uid) or i18n.gettext(lang, N_("another guardian of the child"))

    return [
        ConsentLine(c.id, i18n.gettext(lang, METHOD_NAMES.get(c.method, c.method)),
                    exact(c.granted_at, shown.zone, lang), c.granted_at.isoformat(),
                    who(c.granted_by),
                    exact(c.withdrawn_at, shown.zone, lang) if c.withdrawn_at else None)
        for c in page.items
    ]  # fmt: skip


def _page(
    request: Request, conn: Any, lang: str, user: Any, child: int | None,
    status: int = 200, error: str | None = None, form: preferences.Settings | None = None,
    saved: str | None = None,
) -> Response:  # fmt: skip
    try:
        kids, shown = app_child.pick(conn, user, child)
    except NotFound:
        return render(request, "app_not_found.html", lang, status_code=404, user=user,
                      children=[], page="settings")  # fmt: skip
    settings = form or preferences.load(conn, user.user_id)
    return render(
        request, "app_settings.html", lang, status_code=status, user=user, children=kids,
        shown=shown, page="settings", child_id=shown.id if shown else None, s=settings,
        error=error, saved=saved,
        consents=_consents(conn, user, shown, lang) if shown else [],
    )  # fmt: skip


@router.get("/app/{lang}/settings")
def settings_page(
    request: Request, conn: ConnDep, lang: str, user: Guardian, child: ChildQuery = None,
    saved: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:  # fmt: skip
    return _page(request, conn, lang, user, child, saved=saved)


def _time(value: str) -> time | None:
    try:
        return datetime.strptime(value, "%H:%M").time()
    except ValueError:
        return None


def _back(lang: str, child: int | None, saved: str) -> Response:
    query = urlencode({k: v for k, v in (("child", child), ("saved", saved)) if v})
    return RedirectResponse(f"/app/{lang}/settings?{query}", status_code=303)


@router.post("/app/{lang}/settings")
def save_settings(
    request: Request, conn: ConnDep, lang: str, user: Guardian, child: ChildForm = None,
    attendance: Annotated[bool, Form()] = False, meals: Annotated[bool, Form()] = False,
    low_balance: Annotated[bool, Form()] = False, quiet: Annotated[bool, Form()] = False,
    quiet_from: Annotated[str, Form(max_length=8)] = "",
    quiet_to: Annotated[str, Form(max_length=8)] = "",
) -> Response:  # fmt: skip
    start, end = _time(quiet_from), _time(quiet_to)
    form = preferences.Settings(attendance, meals, low_balance, start, end)
    error = None
    if quiet and (start is None or end is None):
        error = N_("Quiet hours need a start and an end time (HH:MM).")
    elif quiet and start == end:
        error = N_("Quiet hours must start and end at different times.")
    if error is not None:
        return _page(request, conn, lang, user, child, 400, i18n.gettext(lang, error), form)
    if not quiet:
        form = preferences.Settings(attendance, meals, low_balance)
    assert user.user_id is not None  # a guardian's session is a user's
    before, after = preferences.save(conn, user.user_id, form)
    if before != after:
        store.audit(conn, user, "update", "notification_settings", user.user_id,
                    _doc(before), _doc(after))  # fmt: skip
    return _back(lang, child, "settings")


def _doc(s: preferences.Settings) -> dict[str, Any]:
    return {"attendance": s.attendance, "meals": s.meals, "low_balance": s.low_balance,
            "quiet_from": s.quiet_from.strftime("%H:%M") if s.quiet_from else None,
            "quiet_to": s.quiet_to.strftime("%H:%M") if s.quiet_to else None}  # fmt: skip


@router.post("/app/{lang}/consents/{consent_id}/withdraw")
def withdraw(
    request: Request, conn: ConnDep, lang: str, user: Guardian,
    consent_id: Annotated[int, Path(ge=1, le=2**63 - 1)], child: ChildForm = None,
) -> Response:  # fmt: skip
    """The API's withdrawal (its scope: another child's consent is "not found"; audited)."""
    try:
        withdraw_consent(conn, user, consent_id)
    except NotFound:
        return render(request, "app_not_found.html", lang, status_code=404, user=user,
                      children=[], page="settings")  # fmt: skip
    except Conflict:
        return _page(request, conn, lang, user, child, 409, i18n.gettext(
            lang, N_("This consent was already withdrawn.")))  # fmt: skip
    return _back(lang, child, "consent")
