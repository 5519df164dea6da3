"""A child's allergen restrictions and the school's confirmation of them (D28-G).

The enforced list (allergen_restrictions.allergens, mirrored into people.allergen_mask, which
the whitelist carries to the canteen boards) only ever grows at a guardian's word: what a
guardian adds is blocked at once, what a guardian removes is kept as a request until a school
admin confirms or declines it. A school or platform admin's own change takes effect as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.allergens import to_mask, to_names
from cloud.domain.errors import Conflict
from cloud.domain.store import Row

Conn = Any
# what the guardian and the school see
STATES = ("none", "confirmed", "unconfirmed", "removal_pending")


def state_of(row: Row) -> str:
    if row.get("requested_mask") is not None:
        return "removal_pending"
    if row.get("confirmed_at") is not None:
        return "confirmed"
    return "none" if not row.get("allergen_mask") and row.get("set_by") is None else "unconfirmed"


def current(conn: Conn, person_id: int, *, lock: bool = False) -> Row | None:
    lock_it = " FOR UPDATE" if lock else ""
    query = "SELECT * FROM allergen_restrictions WHERE person_id = %s" + lock_it
    return store.fetch_one(conn, query, (person_id,))


def restrictions_of(conn: Conn, person_id: int) -> Row:
    """The enforced list, the pending request if any, the confirmation, and the state."""
    row = current(conn, person_id)
    if row is None:
        row = {"person_id": person_id, "allergens": [], "allergen_mask": 0, "note": "",
               "set_by": None, "updated_at": None, "requested_allergens": None,
               "requested_mask": None, "requested_by": None, "requested_at": None,
               "confirmed_by": None, "confirmed_at": None}  # fmt: skip
    return {**row, "state": state_of(row)}


def _write(
    conn: Conn, actor: Principal, person_id: int, before: Row | None, values: dict[str, Any]
) -> Row:
    cols = ["person_id", *values]
    row = store.fetch_one(
        conn,
        "INSERT INTO allergen_restrictions (" + ", ".join(cols) + ") VALUES ("
        + ", ".join(["%s"] * len(cols)) + ") ON CONFLICT (person_id) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in values) + " RETURNING *",
        [person_id, *values.values()],
    )  # fmt: skip
    assert row is not None
    person = store.get(conn, "people", person_id)
    school = str(person["school_id"])
    store.audit(conn, actor, "update" if before else "create", "allergen_restrictions",
                person_id, before, row, school)  # fmt: skip
    if person["allergen_mask"] != row["allergen_mask"]:
        # the whitelist carries the mask to the canteen boards (cloud/workers/whitelist_push.py)
        store.update(conn, actor, "people", person_id, {"allergen_mask": row["allergen_mask"]})
    return {**row, "state": state_of(row)}


def change(
    conn: Conn, actor: Principal, person_id: int, allergens: Sequence[str], note: str
) -> Row:
    """Set the restrictions a person asks for (scope is the caller's to check)."""
    wanted = to_mask(allergens)
    before = current(conn, person_id, lock=True)
    if before is None and wanted == 0 and not note:
        return restrictions_of(conn, person_id)  # nothing asked, nothing to store or confirm
    enforced = int(before["allergen_mask"]) if before else 0
    values: dict[str, Any] = {"note": note, "set_by": actor.user_id}
    if actor.role == "guardian":
        grown = enforced | wanted  # added at once; removed only when the school confirms
        pending = wanted if grown != wanted else None
        unchanged = before is not None and grown == enforced
        values |= {
            "allergen_mask": grown, "allergens": _names(grown),
            "requested_mask": pending,
            "requested_allergens": _names(pending) if pending is not None else None,
            "requested_by": actor.user_id if pending is not None else None,
            "requested_at": _now(conn) if pending is not None else None,
            "confirmed_by": before["confirmed_by"] if unchanged and before else None,
            "confirmed_at": before["confirmed_at"] if unchanged and before else None,
        }  # fmt: skip
    else:
        values |= _decided(conn, actor, wanted)
    values["updated_at"] = _now(conn)
    return _write(conn, actor, person_id, before, values)


def _names(mask: int) -> list[str]:
    """Allergen names in alphabetical order, as the API has always stored and answered them."""
    return sorted(to_names(mask))


def _now(conn: Conn) -> Any:
    got = conn.execute("SELECT now()").fetchone()
    return got[0]


def _decided(conn: Conn, actor: Principal, mask: int) -> dict[str, Any]:
    return {"allergen_mask": mask, "allergens": _names(mask), "requested_mask": None,
            "requested_allergens": None, "requested_by": None, "requested_at": None,
            "confirmed_by": actor.user_id, "confirmed_at": _now(conn)}  # fmt: skip


def _expect(row: Row | None, seen: Sequence[str], pending_only: bool) -> Row:
    """The school acts on the list it saw: a change made meanwhile is a conflict, not a surprise."""
    if row is None or (pending_only and row["requested_mask"] is None):
        raise Conflict("no change of these restrictions waits for the school")
    now = row["requested_mask"] if row["requested_mask"] is not None else row["allergen_mask"]
    if to_mask(seen) != now:
        raise Conflict(f"the restrictions changed meanwhile: now {_names(now)}")
    return row


def confirm(conn: Conn, actor: Principal, person_id: int, seen: Sequence[str]) -> Row:
    """The school confirms the list it was shown (a pending removal takes effect)."""
    before = _expect(current(conn, person_id, lock=True), seen, pending_only=False)
    return _write(conn, actor, person_id, before, _decided(conn, actor, to_mask(seen)))


def decline(conn: Conn, actor: Principal, person_id: int, seen: Sequence[str]) -> Row:
    """The school keeps the enforced list; the guardian's removal is dropped."""
    before = _expect(current(conn, person_id, lock=True), seen, pending_only=True)
    return _write(conn, actor, person_id, before,
                  _decided(conn, actor, int(before["allergen_mask"])))  # fmt: skip
