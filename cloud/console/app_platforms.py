"""The parents' app's "Platforms" tab (issue #17 part 1, D29-F): which learning platforms each
child signed in to with their qadam account, since when and when last. Minors' data: a guardian
sees what their child agreed to share; the child's account is the pupil's own (D28-O)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.console import app_nav
from cloud.console.app_pages import Guardian, _lang_of_path, children
from cloud.console.guard import check_csrf
from cloud.console.i18n import N_
from cloud.console.web import render
from cloud.oidc import consents

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
app_nav.register("platforms", N_("Platforms"), 45)  # guardians only


@router.get("/app/{lang}/platforms")
def platforms_page(request: Request, conn: ConnDep, lang: str, user: Guardian) -> Response:
    kids = children(conn, user)
    rows = [(kid, consents.platforms_of_person(conn, kid.id)) for kid in kids]
    return render(request, "app_platforms.html", lang, user=user, children=kids, rows=rows,
                  page="platforms")  # fmt: skip


@router.post("/app/{lang}/platforms/withdraw")
def withdraw(
    request: Request,
    conn: ConnDep,
    lang: str,
    user: Guardian,
    child: Annotated[int, Form(ge=1, le=2**63 - 1)],
    client_id: Annotated[str, Form(max_length=100)],
) -> Response:
    """The guardian takes back their child's consent to a platform (and its tokens)."""
    if not consents.withdraw_for_child(conn, user, child, client_id):
        return render(request, "app_not_found.html", _lang_of_path(lang), status_code=404,
                      user=user, page="")  # fmt: skip
    return RedirectResponse(f"/app/{lang}/platforms", status_code=303)
