"""The app's "Entry without a card" page (issue #17 part 3, D29-J, docs/altid.md): a guardian
allows the QR code or the PIN for their child (the API's own consent route function: scope,
audit) and sets the PIN; the guardian for their child and a student for themself see the QR
code the turnstile's scanner reads, made on the server for the current 30 s step
(cloud/altid/keys.py, the board's derivation) and replaced by the page when the step ends. No
consent, no code: the fragment answers 404. Withdrawal is on the Settings page."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.altid import keys
from cloud.altid.pins import has_pin, set_pin
from cloud.api.consents import ConsentIn, record_consent
from cloud.api.deps import ConnDep
from cloud.console import app_child, app_nav, i18n
from cloud.console.app_pages import AppUser, Child, Guardian
from cloud.console.guard import check_csrf
from cloud.console.i18n import N_
from cloud.console.invitations import qr_svg
from cloud.console.web import render
from cloud.domain.errors import Conflict, Invalid, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
app_nav.register("entry", N_("Entry"), 85, app_nav.BOTH)
ChildQuery = Annotated[int | None, Query(ge=1, le=2**63 - 1)]
ChildForm = Annotated[int | None, Form(ge=1, le=2**63 - 1)]
SAVED = {"qr": N_("Entry by QR code is allowed. The card keeps working."),
         "pin": N_("Entry by PIN is allowed. Set the PIN below."),
         "pinset": N_("The PIN is set. It works at the school's keypads after the next update "
                      "of the readers, within a minute.")}  # fmt: skip


def _live(conn: Any, person: int) -> set[str]:
    rows = conn.execute(
        "SELECT method FROM consents WHERE person_id = %s AND withdrawn_at IS NULL"
        " AND method IN ('qr', 'pin')",
        (person,),
    ).fetchall()
    return {str(r[0]) for r in rows}


def _code(conn: Any, shown: Child) -> tuple[Any, str, int]:
    """(the QR code as SVG, its text, seconds until the next step)."""
    import time

    row = conn.execute(
        "SELECT s.site_key FROM people p JOIN schools s ON s.id = p.school_id WHERE p.id = %s",
        (shown.id,),
    ).fetchone()
    now = time.time()
    text, ends = keys.qr_text(bytes(row[0]), shown.id, now)
    return qr_svg(text), text, max(1, int(ends - now) + 1)


def _page(
    request: Request, conn: Any, lang: str, user: Any, child: int | None,
    status: int = 200, error: str | None = None, saved: str | None = None,
) -> Response:  # fmt: skip
    try:
        kids, shown = app_child.pick(conn, user, child)
    except NotFound:
        return render(request, "app_not_found.html", lang, status_code=404, user=user,
                      children=[], page="entry")  # fmt: skip
    live = _live(conn, shown.id) if shown else set()
    code = _code(conn, shown) if shown and "qr" in live else None
    return render(
        request, "app_altid.html", lang, status_code=status, user=user, children=kids,
        shown=shown, page="entry", child_id=shown.id if shown else None, here="entry",
        live=live, code=code, pin_set=bool(shown and has_pin(conn, shown.id)), error=error,
        saved=i18n.gettext(lang, SAVED[saved]) if saved in SAVED else None,
    )  # fmt: skip


@router.get("/app/{lang}/entry")
def entry_page(
    request: Request, conn: ConnDep, lang: str, user: AppUser, child: ChildQuery = None,
    saved: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:  # fmt: skip
    return _page(request, conn, lang, user, child, saved=saved)


@router.get("/app/{lang}/entry/code")
def entry_code(
    request: Request, conn: ConnDep, lang: str, user: AppUser, child: ChildQuery = None
) -> Response:
    """The code fragment the page swaps in when a step ends; 404 once the consent is gone."""
    try:
        _kids, shown = app_child.pick(conn, user, child)
    except NotFound:
        shown = None
    if shown is None or "qr" not in _live(conn, shown.id):
        return Response(status_code=404, headers={"Cache-Control": "no-store"})
    return render(request, "_app_altid_code.html", lang, user=user, shown=shown,
                  code=_code(conn, shown))  # fmt: skip


def _back(lang: str, child: int | None, saved: str) -> Response:
    query = urlencode({k: v for k, v in (("child", child), ("saved", saved)) if v})
    return RedirectResponse(f"/app/{lang}/entry?{query}", status_code=303)


@router.post("/app/{lang}/entry/consent")
def give_consent(
    request: Request, conn: ConnDep, lang: str, user: Guardian, child: ChildForm = None,
    method: Annotated[str, Form(max_length=8)] = "",
) -> Response:  # fmt: skip
    """The guardian's own consent, through the API's route function (scope, audit)."""
    if child is None or method not in ("qr", "pin"):
        return _page(request, conn, lang, user, child, 400,
                     i18n.gettext(lang, N_("Choose a child and a method.")))  # fmt: skip
    try:
        record_consent(conn, user, ConsentIn(person_id=child, method=method))  # type: ignore[arg-type]
    except NotFound:
        return render(request, "app_not_found.html", lang, status_code=404, user=user,
                      children=[], page="entry")  # fmt: skip
    except Conflict:
        pass  # already given (a second tap of the button): the page shows it
    return _back(lang, child, method)


@router.post("/app/{lang}/entry/pin")
def save_pin(
    request: Request, conn: ConnDep, lang: str, user: Guardian, child: ChildForm = None,
    pin: Annotated[str, Form(max_length=16)] = "",
    again: Annotated[str, Form(max_length=16)] = "",
) -> Response:  # fmt: skip
    if child is None:
        return _page(request, conn, lang, user, child, 400,
                     i18n.gettext(lang, N_("Choose a child and a method.")))  # fmt: skip
    if pin != again:
        return _page(request, conn, lang, user, child, 422,
                     i18n.gettext(lang, N_("The two PINs differ.")))  # fmt: skip
    try:
        set_pin(conn, user, child, pin)
    except NotFound:
        return render(request, "app_not_found.html", lang, status_code=404, user=user,
                      children=[], page="entry")  # fmt: skip
    except Invalid as e:
        msg = (N_("A PIN is 4 to 8 digits.") if e.field == "pin" and "digits" in e.msg
               else N_("Allow entry by PIN first."))  # fmt: skip
        return _page(request, conn, lang, user, child, 422, i18n.gettext(lang, msg))
    return _back(lang, child, "pinset")
