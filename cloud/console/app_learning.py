"""The student app's "Learning" tab (issue #16 "For a student", D28-O): the launch pad of the
learning resources the pupil's school lists. It reads through the API's domain function
(cloud/domain/learning.py), so it shows exactly what ``GET /api/v1/schools/{id}/learning``
returns the same student. The single sign-on issue plugs in here: a resource's link is where a
launch through the school's identity will go."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cloud.api.deps import ConnDep
from cloud.auth.principal import Principal
from cloud.console import app_nav
from cloud.console.app_pages import AppSignIn, _lang_of_path, children
from cloud.console.guard import check_csrf, session_user
from cloud.console.i18n import N_
from cloud.console.web import render
from cloud.domain import learning
from cloud.oidc import launch

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
app_nav.register("learning", N_("Learning"), 15, ("student",))  # in sight on a phone


def student(request: Request, conn: ConnDep, lang: str) -> Principal:
    """The signed-in student; anyone else signs in (a guardian has no Learning tab)."""
    _lang_of_path(lang)
    user = session_user(request, conn)
    if user is None or user.role != "student" or user.school_id is None:
        raise AppSignIn(lang)
    return user


Student = Annotated[Principal, Depends(student)]


@router.get("/app/{lang}/learning")
def learning_page(request: Request, conn: ConnDep, lang: str, user: Student) -> Response:
    me = children(conn, user)
    assert user.school_id is not None  # checked by student()
    items = learning.resources(conn, user, user.school_id) if me else []
    # the platforms the school enabled for single sign-on (D29-F): opened signed in
    platforms = launch.for_school(conn, user.school_id) if me else []
    return render(request, "app_learning.html", lang, user=user, children=me,
                  shown=me[0] if me else None, items=items, platforms=platforms,
                  page="learning")  # fmt: skip
