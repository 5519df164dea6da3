"""A person's data as a data subject may ask for it (issue #18; Kazakhstan's law on personal
data lets the subject, for a child their parent, ask what is held and have it destroyed): an
export of every row about them, and an erasure that keeps the anonymised counts the monthly
reports need (D28-K).

Which tables hold data about a person is read from the database's own catalogue (every foreign
key to ``people`` and every ``person_id`` column), so a table added later cannot be missed
silently: ``ERASURE`` must say what erasure does to each of them, and a test fails until it
does."""

from __future__ import annotations

from typing import Any, Literal

from psycopg import sql
from psycopg.rows import dict_row

from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Conflict, NotFound

Policy = Literal["delete", "keep"]
# keep: facts the reports, the ledger or the state's Social Wallet must still count after the
# name is gone; they point only at the person's number, which then names no one.
# delete: what identifies or describes the person (cards, links to guardians, health data,
# opinions, consents for identification that no longer happens).
ERASURE: dict[str, Policy] = {
    "events": "keep",
    "attendance": "keep",
    "meal_receipts": "keep",
    "meal_rollup": "keep",
    "ledger_entries": "keep",  # append-only by trigger: money must add up
    "balances": "keep",
    "sw_deliveries": "keep",  # records already owed to the state
    "meal_eligibility": "keep",  # the category the meals were counted under
    "cards": "delete",
    "guardian_students": "delete",
    "allergen_restrictions": "delete",
    "consents": "delete",
    "altid_keys": "delete",  # the person key (its cards row goes with cards; D29-J)
    "altid_pins": "delete",  # the site-keyed PIN key (D29-J)
    "meal_ratings": "delete",
    "card_enrolments": "delete",  # card UIDs read at a reader for them
    "student_accounts": "delete",  # the pupil's own account no longer reaches them (D28-O)
    "report_anomaly_acks": "keep",  # a signed-off monthly report's check, by number only
}
# rows of these other tables hold the person's number under another column name
EXTRA: dict[str, str] = {}


def person_tables(conn: Any) -> dict[str, str]:
    """table -> its column holding a person's id: every foreign key to people, and every
    person_id column (the events hypertable-style partitions' parent, not each partition)."""
    rows = conn.execute(
        """
        SELECT c.conrelid::regclass::text, a.attname
          FROM pg_constraint c
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
         WHERE c.contype = 'f' AND c.confrelid = 'people'::regclass
        UNION
        SELECT cl.relname, col.attname
          FROM pg_attribute col
          JOIN pg_class cl ON cl.oid = col.attrelid
          JOIN pg_namespace ns ON ns.oid = cl.relnamespace
         WHERE col.attname = 'person_id' AND NOT col.attisdropped
           AND ns.nspname = current_schema() AND cl.relkind IN ('r', 'p')
           AND NOT cl.relispartition
        """
    ).fetchall()
    found = {str(t): str(c) for t, c in rows}
    found.update(EXTRA)
    return found


def _rows(conn: Any, table: str, column: str, person_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL("SELECT * FROM {} WHERE {} = %s").format(
                sql.Identifier(table), sql.Identifier(column)
            ),
            (person_id,),
        )
        return [{k: store._plain(v) for k, v in r.items()} for r in cur.fetchall()]


def export(conn: Any, actor: Principal, person_id: int) -> dict[str, Any]:
    """Everything held about the person, table by table (the caller checked the scope)."""
    person = store.get(conn, "people", person_id)
    tables = {t: _rows(conn, t, c, person_id) for t, c in sorted(person_tables(conn).items())}
    store.audit(conn, actor, "export", "people", person_id, None, None,
                school_id=str(person["school_id"]))  # fmt: skip
    return {
        "person": {k: store._plain(v) for k, v in person.items()},
        "tables": {t: rows for t, rows in tables.items() if rows},
    }


def erase(conn: Any, actor: Principal, person_id: int, reason: str | None = None) -> dict[str, Any]:
    """Delete what names the person and blank their row, in one transaction. Only a person
    already deactivated (so no board admits them any more, and the school meant it) can be
    erased; erasing twice is a conflict. ``reason`` (the console asks for it: whose request,
    when) goes into the audit row. Returns how many rows each table lost."""
    with conn.transaction():
        before = conn.execute(
            "SELECT active, erased_at FROM people WHERE id = %s FOR UPDATE", (person_id,)
        ).fetchone()
        if before is None:
            raise NotFound("person not found")
        active, erased_at = before
        if erased_at is not None:
            raise Conflict("this person's data is already erased")
        if active:
            raise Conflict("deactivate the person first; erasure cannot be undone")
        tables = person_tables(conn)
        unknown = sorted(set(tables) - set(ERASURE))
        if unknown:  # a table added without deciding: refuse rather than leave data behind
            raise Conflict(f"no erasure rule for table(s) {', '.join(unknown)}")
        old = store.get(conn, "people", person_id)
        removed: dict[str, int] = {}
        for table, column in sorted(tables.items()):
            if ERASURE[table] == "delete":
                cur = conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                        sql.Identifier(table), sql.Identifier(column)
                    ),
                    (person_id,),
                )
                if cur.rowcount:
                    removed[table] = cur.rowcount
        conn.execute(
            "UPDATE people SET full_name = '', external_id = NULL, class_id = NULL,"
            " allergen_mask = 0, erased_at = now() WHERE id = %s",
            (person_id,),
        )
        # earlier audit rows about the person keep what was done, not the name it was done to
        conn.execute(
            "UPDATE audit_log SET before = before - 'full_name' - 'external_id',"
            " after = after - 'full_name' - 'external_id'"
            " WHERE entity = 'people' AND entity_id = %s",
            (str(person_id),),
        )
        new = store.get(conn, "people", person_id)
        # the audit row keeps that an erasure happened and its counts, not the erased name
        redacted = {k: v for k, v in old.items() if k not in ("full_name", "external_id")}
        after = {**new, "removed": removed, **({"reason": reason} if reason else {})}
        store.audit(conn, actor, "erase", "people", person_id, redacted, after)
    return {"person_id": person_id, "erased_at": new["erased_at"], "removed": removed}
