"""The console's Learning page (issue #16 "For a student", D29-E): the school's list of learning
resources that the student app's Learning tab opens, edited as ``PUT
/api/v1/schools/{id}/learning`` edits it: the same request model checks each title and link
(https only), the same domain function (cloud/domain/learning.py) replaces the whole list and
audits it, and the same roles may read and change it (the API's ``LearningReader`` and
``LearningEditor``).

The form works without JavaScript: every button sends the whole list; "up", "down" and "remove"
change it and save it in one audited step, as the API's whole-list PUT does. A list with any bad
row is shown again with its errors, and nothing changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from cloud.api.deps import ConnDep, roles_of
from cloud.api.learning import LearningEditor, LearningReader, ResourcesIn
from cloud.auth.principal import Principal
from cloud.console import i18n, nav
from cloud.console.guard import CONSOLE_ROLES, ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav, _school_choice
from cloud.console.web import render
from cloud.domain import learning
from cloud.domain.errors import NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
READERS = tuple(r for r in roles_of(LearningReader) if r in CONSOLE_ROLES)
EDITORS = tuple(r for r in roles_of(LearningEditor) if r in CONSOLE_ROLES)
nav.register("/learning", N_("Learning"), READERS, 45)
BLANK_ROWS = 3  # empty rows under the list, to add resources
MAX_FIELDS = learning.MAX_RESOURCES + BLANK_ROWS  # a longer form is not ours
TOO_MANY = N_("At most %(n)s resources: remove some first.")
ROW_PROBLEMS = {
    "title": N_("Resource %(n)s: the title is required, at most 200 characters."),
    "url": N_("Resource %(n)s: the link must be a full https:// address without spaces, at most"
              " 2000 characters."),
    "pair": N_("Resource %(n)s: give both a title and a link."),
}  # fmt: skip
SAVED = N_("The list is saved. Pupils see it in the app's Learning tab.")


def _not_found(request: Request, lang: str, user: Principal) -> Response:
    return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))


def _page(request: Request, lang: str, user: Principal, schools: list[tuple[str, str]],
          school: str | None, rows: list[tuple[str, str]], errors: list[str], done: bool = False,
          status_code: int = 200) -> Response:  # fmt: skip
    blank = max(0, min(BLANK_ROWS, learning.MAX_RESOURCES - len(rows)))
    return render(request, "learning.html", lang, status_code=status_code, user=user,
                  nav=_nav(user), schools=schools, school=school, rows=rows, blank=blank,
                  errors=errors, done=SAVED if done else None, can_edit=user.role in EDITORS,
                  max_resources=learning.MAX_RESOURCES)  # fmt: skip


@router.get("/learning")
def learning_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
    done: Annotated[str | None, Query(max_length=5)] = None,
) -> Response:
    require_role(user, READERS)
    lang = _lang(request, conn, user)
    try:
        schools, shown = _school_choice(conn, user, school or None)
        items = learning.resources(conn, user, shown) if shown else []
    except NotFound:
        return _not_found(request, lang, user)
    rows = [(r.title, r.url) for r in items]
    return _page(request, lang, user, schools, shown, rows, [], done=done == "1")


def _moved(rows: list[tuple[str, str]], action: str) -> list[tuple[str, str]]:
    """The list after "up:N", "down:N" or "remove:N" (N counts from 0); else unchanged."""
    verb, _, index = action.partition(":")
    if not index.isdigit() or int(index) >= len(rows):
        return rows
    i = int(index)
    out = list(rows)
    if verb == "remove":
        del out[i]
    elif verb == "up" and i > 0:
        out[i - 1], out[i] = out[i], out[i - 1]
    elif verb == "down" and i + 1 < len(out):
        out[i + 1], out[i] = out[i], out[i + 1]
    return out


def check(rows: list[tuple[str, str]]) -> tuple[list[learning.Resource], list[tuple[str, int]]]:
    """The rows through the API's request model: (resources, problems as (message, row n))."""
    problems: list[tuple[str, int]] = []
    for n, (title, url) in enumerate(rows, 1):
        if bool(title) != bool(url):
            problems.append((ROW_PROBLEMS["pair"], n))
    if len(rows) > learning.MAX_RESOURCES:
        return [], [(TOO_MANY, learning.MAX_RESOURCES)]
    if problems:
        return [], problems
    try:
        body = ResourcesIn.model_validate({"resources": [{"title": t, "url": u} for t, u in rows]})
    except ValidationError as e:
        seen: set[tuple[str, int]] = set()
        for err in e.errors():
            loc = err["loc"]
            if len(loc) >= 3 and isinstance(loc[1], int) and loc[2] in ROW_PROBLEMS:
                seen.add((ROW_PROBLEMS[str(loc[2])], loc[1] + 1))
        return [], sorted(seen, key=lambda p: (p[1], p[0])) or [(TOO_MANY, learning.MAX_RESOURCES)]
    return [learning.Resource(r.title, r.url) for r in body.resources], []


@router.post("/learning")
def save(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str, Form(max_length=100)] = "",
    title: Annotated[list[str] | None, Form(max_length=MAX_FIELDS)] = None,
    url: Annotated[list[str] | None, Form(max_length=MAX_FIELDS)] = None,
    action: Annotated[str, Form(max_length=20)] = "save",
) -> Response:
    require_role(user, EDITORS)
    lang = _lang(request, conn, user)
    try:
        schools, shown = _school_choice(conn, user, school or None)
        if shown is None:
            raise NotFound("no school")
    except NotFound:
        return _not_found(request, lang, user)
    titles, urls = title or [], url or []
    if len(titles) != len(urls):
        return _not_found(request, lang, user)  # not a form of ours
    typed = [(t.strip(), u.strip()) for t, u in zip(titles, urls, strict=True)]
    rows = [r for r in _moved(typed, action) if r[0] or r[1]]  # N as the page numbered them
    items, problems = check(rows)
    if problems:
        errors = [i18n.gettext(lang, m) % {"n": n} for m, n in problems]
        # the form again with its messages: a 200, as the sign-in and the import do (D27-E)
        return _page(request, lang, user, schools, shown, rows, errors)
    learning.replace(conn, user, shown, items)
    return RedirectResponse(f"/learning?school={shown}&done=1", status_code=303)
