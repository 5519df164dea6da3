"""A pupil's keypad PIN (D29-J): kept only as its site-keyed PIN key (cloud/altid/keys.py), set
by a guardian of the pupil (or the school) while a consent for 'pin' is live, audited. The
whitelist carries the key, never the PIN; the board locks a person's PIN out after wrong tries."""

from __future__ import annotations

from typing import Any

from cloud.altid.keys import PIN_RE, pin_key
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Invalid


def set_pin(conn: Any, user: Principal, person_id: int, pin: str) -> None:
    """Set or replace the PIN. Raises NotFound outside the user's scope, Invalid for a PIN that
    is not 4-8 digits or a pupil without a live consent for the PIN."""
    school = scope.require_person(conn, user, person_id)
    if not isinstance(pin, str) or not PIN_RE.fullmatch(pin):
        raise Invalid("pin", "a PIN is 4 to 8 digits")
    live = conn.execute(
        "SELECT 1 FROM consents WHERE person_id = %s AND method = 'pin' AND withdrawn_at IS NULL",
        (person_id,),
    ).fetchone()
    if not live:
        raise Invalid("pin", "no consent to the PIN is on record for this pupil")
    row = conn.execute("SELECT site_key FROM schools WHERE id = %s", (school,)).fetchone()
    key = pin_key(bytes(row[0]), person_id, pin).hex()
    conn.execute(
        "INSERT INTO altid_pins (person_id, pin_key, set_by) VALUES (%s, %s, %s)"
        " ON CONFLICT (person_id) DO UPDATE SET pin_key = excluded.pin_key,"
        " set_by = excluded.set_by, set_at = now()",
        (person_id, key, user.user_id),
    )
    # the audit names the change, never the PIN or its key
    store.audit(conn, user, "update", "altid_pin", person_id, None, {"set": True}, school)


def has_pin(conn: Any, person_id: int) -> bool:
    return (
        conn.execute("SELECT 1 FROM altid_pins WHERE person_id = %s", (person_id,)).fetchone()
        is not None
    )
