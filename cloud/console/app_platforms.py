"""The parents' app's "Platforms" tab (issue #17 part 1, D29-F): which learning platforms each
child signed in to with their qadam account, since when and when last. Minors' data: a guardian
sees what their child agreed to share; the child's account is the pupil's own (D28-O)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cloud.api.deps import ConnDep
from cloud.console import app_nav
from cloud.console.app_pages import Guardian, children
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
