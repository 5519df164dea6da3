"""The console's guardians page and the printable invitation letter (issue #15 "guardian
invitations", D27-F): a school admin makes a one-time link for a guardian and prints it as a
letter with a QR code, in the guardian's language. The invitation itself is the API's
(cloud/auth/invitations.py; ``POST /api/v1/guardians/{id}/invitations`` makes the same)."""

from __future__ import annotations

from typing import Annotated

import segno
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from markupsafe import Markup

from cloud.api.deps import ConnDep
from cloud.api.invitations import link
from cloud.api.models import IdPath
from cloud.auth import invitations
from cloud.auth.principal import Role
from cloud.console import i18n, nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.web import render
from cloud.domain.errors import NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
# who may invite: the API's user managers (cloud/api/deps.py UserManager)
INVITERS: tuple[Role, ...] = ("platform_admin", "school_admin")
nav.register("/guardians", N_("Guardians"), INVITERS, 40)


@router.get("/guardians")
def guardians_page(request: Request, conn: ConnDep, user: ConsoleUser) -> Response:
    require_role(user, INVITERS)
    lang = _lang(request, conn, user)
    rows = invitations.guardians_in_scope(conn, user)
    return render(request, "guardians.html", lang, user=user, nav=_nav(user), rows=rows)


def qr_svg(url: str) -> Markup:
    """The link as an inline SVG QR code (segno; error correction M survives a crumpled page)."""
    code = segno.make(url, error="m", micro=False)
    return Markup(code.svg_inline(scale=5, border=4, dark="#000", light="#fff"))  # noqa: S704


@router.post("/guardians/{guardian_id}/invitation")
def make_letter(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    guardian_id: IdPath,
    letter_lang: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """A new link (older ones stop working) and its letter; the link is in this answer only."""
    require_role(user, INVITERS)
    page_lang = _lang(request, conn, user)
    try:
        inv = invitations.create(conn, user, guardian_id)
    except NotFound:
        return render(request, "not_found.html", page_lang, status_code=404, user=user,
                      nav=_nav(user))  # fmt: skip
    lang = i18n.pick(letter_lang, inv.locale, page_lang)
    url = link(request, inv.token) + f"?lang={lang}"
    school = conn.execute(
        "SELECT name FROM schools WHERE id = %s", (user.school_id,)
    ).fetchone() if user.school_id else None  # fmt: skip
    return render(request, "letter.html", lang, user=user, nav=_nav(user), inv=inv, url=url,
                  qr=qr_svg(url), school=school[0] if school else "")  # fmt: skip
