"""The parents' app's allergen restrictions (issue #16, D28-G): ``/app/{lang}/restrictions``,
the child's restrictions as checkboxes, the school's confirmation state, and the change.

The change is the API's (``PUT /api/v1/people/{id}/restrictions`` for a guardian:
cloud/domain/restrictions.py): what is added is blocked at the canteen at once (the whitelist
carries the new mask to the boards), what is removed waits for the school's confirmation."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.console import app_nav, i18n
from cloud.console.allergen_names import ALLERGEN_NAMES, named
from cloud.console.app_menu import ChildQuery, not_found, pick_child
from cloud.console.app_pages import Guardian, children, exact
from cloud.console.guard import check_csrf
from cloud.console.i18n import N_
from cloud.console.web import render
from cloud.domain import restrictions
from cloud.domain.allergens import ALLERGENS
from cloud.domain.errors import NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
app_nav.register("restrictions", N_("Allergies"), 25)
NOTE_MAX = 1000


def _when(value: Any, zone: str, lang: str) -> str | None:
    """In the school's zone, as the feed writes times."""
    return None if value is None else exact(value, zone, lang)


def _page(
    request: Request, conn: ConnDep, lang: str, user: Any, kid: Any, kids: list[Any],
    status: int = 200, error: str | None = None, saved: bool = False,
) -> Response:  # fmt: skip
    row = restrictions.restrictions_of(conn, kid.id)
    wanted = (
        row["requested_allergens"] if row["requested_allergens"] is not None else row["allergens"]
    )
    options = [
        (code, i18n.gettext(lang, ALLERGEN_NAMES[code]), code in wanted) for code in ALLERGENS
    ]
    pending = [a for a in row["allergens"] if a not in wanted]
    return render(request, "app_restrictions.html", lang, status_code=status, user=user,
                  children=kids, shown=kid, options=options, state=row["state"],
                  enforced=named(lang, row["allergens"]), pending=named(lang, pending),
                  note=row["note"], error=error, saved=saved, page="restrictions",
                  child_id=kid.id, confirmed_at=_when(row["confirmed_at"], kid.zone, lang),
                  requested_at=_when(row["requested_at"], kid.zone, lang))  # fmt: skip


@router.get("/app/{lang}/restrictions")
def restrictions_page(
    request: Request, conn: ConnDep, lang: str, user: Guardian, child: ChildQuery = None,
    saved: Annotated[int | None, Query(ge=0, le=1)] = None,
) -> Response:  # fmt: skip
    try:
        kids, kid = pick_child(conn, user, child)
    except NotFound:
        return not_found(request, lang, user, children(conn, user))
    return _page(request, conn, lang, user, kid, kids, saved=bool(saved))


@router.post("/app/{lang}/restrictions")
def change_restrictions(
    request: Request, conn: ConnDep, lang: str, user: Guardian,
    child: Annotated[int, Form(ge=1, le=2**63 - 1)],
    allergen: Annotated[list[str] | None, Form(max_length=16)] = None,
    note: Annotated[str, Form(max_length=4000)] = "",
) -> Response:  # fmt: skip
    try:
        kids, kid = pick_child(conn, user, child)
    except NotFound:
        return not_found(request, lang, user, children(conn, user))
    chosen = list(allergen or [])
    error = None
    if any(a not in ALLERGENS for a in chosen):
        error = N_("Choose allergens from the list.")
    elif len(note) > NOTE_MAX:
        error = N_("The note is too long (1,000 characters at most).")
    if error is not None:
        return _page(request, conn, lang, user, kid, kids, 422, i18n.gettext(lang, error))
    restrictions.change(conn, user, kid.id, chosen, note.strip())
    back = f"/app/{lang}/restrictions?" + urlencode({"child": kid.id, "saved": 1})
    return RedirectResponse(back, status_code=303)
