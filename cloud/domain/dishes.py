"""A school's dish catalogue: the writes the API's dish routes (cloud/api/canteen.py) and the
console's dishes page (cloud/console/menu_dishes.py) share, so both check, audit and push alike.

Roles are the callers' (cloud/api/deps.py ``SchoolAdmin`` writes, ``CanteenReader`` reads);
the scope (a dish of a school outside the caller's is "not found") is checked here."""

from __future__ import annotations

from typing import Any

import psycopg

from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.commands import menu as menus
from cloud.domain import dish_photos, store
from cloud.domain.allergens import to_mask
from cloud.domain.errors import NotFound

Conn = psycopg.Connection[Any]


def in_scope(conn: Conn, p: Principal, dish_id: int) -> dict[str, Any]:
    """The dish's row, or NotFound when it does not exist or its school is outside the scope."""
    row = store.get(conn, "dishes", dish_id)
    ids = scope.school_ids(conn, p)
    if ids is not None and row["school_id"] not in ids:
        raise NotFound(f"dish {dish_id} not found")
    return row


def values(given: dict[str, Any]) -> dict[str, Any]:
    """Columns from validated input: allergen names sorted and their mask (the boards' bits);
    None dropped except photo_url (None removes the photo)."""
    if given.get("allergens") is not None:
        names = sorted(set(given["allergens"]))
        given["allergens"] = names
        given["allergen_mask"] = to_mask(names)
    return {k: v for k, v in given.items() if v is not None or k == "photo_url"}


def create(conn: Conn, p: Principal, given: dict[str, Any]) -> dict[str, Any]:
    scope.require_school(conn, p, str(given["school_id"]))
    return store.insert(conn, p, "dishes", values(given))


def update(
    conn: Conn, p: Principal, dish_id: int, given: dict[str, Any], days_ahead: int
) -> dict[str, Any]:
    """A dish of the planned menu that changes (allergens, price, name, photo) goes to the
    school's canteen boards at once, in their new menu (D27-A)."""
    in_scope(conn, p, dish_id)
    row = store.update(conn, p, "dishes", dish_id, values(given))
    menus.push_school(conn, str(row["school_id"]), days_ahead)
    return row


def set_photo(
    conn: Conn, p: Principal, dish_id: int, data: bytes | dish_photos.Prepared, days_ahead: int
) -> dict[str, Any]:
    """Check the dish is in scope, then the photo (Invalid: nothing is kept); keep it and point
    the dish at it, audited and pushed like any dish change. ``data``: the upload, or what
    dish_photos.prepare made of it (a form that checks the photo before anything else)."""
    dish = in_scope(conn, p, dish_id)
    photo = data if isinstance(data, dish_photos.Prepared) else dish_photos.prepare(data)
    url = dish_photos.store(conn, str(dish["school_id"]), p.user_id, photo)
    return update(conn, p, dish_id, {"photo_url": url}, days_ahead)


def retire(conn: Conn, p: Principal, dish_id: int) -> dict[str, Any]:
    """Dishes keep their ratings, so they are retired (active = false), not deleted."""
    in_scope(conn, p, dish_id)
    return store.update(conn, p, "dishes", dish_id, {"active": False})


def of_school(conn: Conn, school: str, active_only: bool = False) -> list[dict[str, Any]]:
    """The school's dishes by Russian name (the caller has checked the school is in scope)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, school_id, name_kk, name_ru, name_en, photo_url, price, allergens,"
            " allergen_mask, active FROM dishes WHERE school_id = %s"
            + (" AND active" if active_only else "")
            + " ORDER BY active DESC, name_ru, id",
            (school,),
        )
        cols = [c.name for c in cur.description or ()]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
