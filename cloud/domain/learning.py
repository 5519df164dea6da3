"""Each school's learning resources (issue #16 "For a student", D28-O): a short ordered list of
titles and links the student app's "Learning" tab opens. The API's routes
(cloud/api/learning.py) and the app's page (cloud/console/app_learning.py) both read through
here, so a page shows exactly what the same person's API call returns. A later single sign-on
issue plugs in by giving a resource a launch URL; today a resource is a plain link."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain.store import audit

Conn = psycopg.Connection[Any]
MAX_RESOURCES = 20


@dataclass(frozen=True)
class Resource:
    title: str
    url: str


def resources(conn: Conn, p: Principal, school_id: str) -> list[Resource]:
    """The school's list in order; another school (or one that does not exist) is NotFound."""
    scope.require_school(conn, p, school_id)
    rows = conn.execute(
        "SELECT title, url FROM learning_resources WHERE school_id = %s ORDER BY position",
        (school_id,),
    ).fetchall()
    return [Resource(str(r[0]), str(r[1])) for r in rows]


def replace(conn: Conn, p: Principal, school_id: str, items: list[Resource]) -> list[Resource]:
    """Replace the school's whole list (the order given is kept) and audit the change. The
    caller validated each title and URL; the table's CHECKs stand behind it."""
    before = resources(conn, p, school_id)
    conn.execute("DELETE FROM learning_resources WHERE school_id = %s", (school_id,))
    for position, item in enumerate(items[:MAX_RESOURCES]):
        conn.execute(
            "INSERT INTO learning_resources (school_id, position, title, url)"
            " VALUES (%s, %s, %s, %s)",
            (school_id, position, item.title, item.url),
        )
    after = resources(conn, p, school_id)
    audit(conn, p, "update", "learning_resources", school_id,
          {"school_id": school_id, "resources": [vars(r) for r in before]},
          {"school_id": school_id, "resources": [vars(r) for r in after]})  # fmt: skip
    return after
