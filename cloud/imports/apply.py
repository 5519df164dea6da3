"""Apply a validated import plan inside the caller's transaction (set-based SQL: one statement
per table, so 10,000 rows take well under a second) and write one audit_log row that
summarises it, with the ids of everything created and the before/after of every update."""

from __future__ import annotations

from typing import Any

import psycopg

from cloud.auth.principal import Principal
from cloud.domain import store, student_accounts
from cloud.imports.plan import Plan

Conn = psycopg.Connection[Any]

# Imported guardians get no usable password (argon2 rejects this as a hash, so no login works)
# until they are invited; sending invites is not built yet (docs/import.md).
NO_PASSWORD = "!import:invite-pending"


def apply_plan(conn: Conn, actor: Principal, plan: Plan, meta: dict[str, Any]) -> dict[str, Any]:
    assert not plan.errors, "apply_plan needs a plan without errors"
    summary: dict[str, Any] = {**meta, "rows": plan.rows, "created": plan.would_create(),
                               "updated": plan.would_update()}  # fmt: skip
    if plan.kind == "guardians":
        summary.update(_guardians(conn, actor, plan))
    else:
        summary.update(_people(conn, actor, plan))
    store.audit(conn, actor, "create", "imports", f"{plan.kind}:{meta.get('sha256', '')[:16]}",
                None, summary, plan.school_id)  # fmt: skip
    return summary


def _people(conn: Conn, actor: Principal, plan: Plan) -> dict[str, Any]:
    school = plan.school_id
    classes = dict(plan.class_ids)
    keys = list(plan.new_classes)
    if keys:
        rows = conn.execute(
            "INSERT INTO classes (school_id, name) SELECT %s, unnest(%s::text[])"
            " RETURNING id, name",
            (school, [plan.new_classes[k] for k in keys]),
        ).fetchall()
        by_name = {str(name): int(cid) for cid, name in rows}
        for k in keys:
            classes[k] = by_name[plan.new_classes[k]]
    ids = dict(plan.people_ids)
    new = plan.people_new
    kind = "student" if plan.kind == "students" else "staff"
    created: list[int] = []
    if new:
        rows = conn.execute(
            "INSERT INTO people (school_id, kind, full_name, class_id, external_id, meal_category)"
            " SELECT %s, %s, * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::smallint[])"
            " RETURNING id, external_id",
            (
                school,
                kind,
                [p.full_name for p in new],
                [None if p.class_key is None else classes[p.class_key] for p in new],
                [p.iin for p in new],
                [p.meal_code for p in new],
            ),
        ).fetchall()
        for pid, ext in rows:
            ids[str(ext)] = int(pid)
            created.append(int(pid))
    updates: list[dict[str, Any]] = []
    if plan.people_upd:
        for u in plan.people_upd:
            cid = u.after.get("class_id")
            if isinstance(cid, str):
                u.after["class_id"] = classes[cid.removeprefix("new:")]
            updates.append({"id": u.id, "before": u.before, "after": u.after})
        conn.execute(
            "UPDATE people p SET full_name = coalesce(u.full_name, p.full_name),"
            " class_id = coalesce(u.class_id, p.class_id),"
            " meal_category = coalesce(u.meal_category, p.meal_category)"
            " FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::smallint[])"
            " AS u(id, full_name, class_id, meal_category) WHERE p.id = u.id",
            (
                [u.id for u in plan.people_upd],
                [u.after.get("full_name") for u in plan.people_upd],
                [u.after.get("class_id") for u in plan.people_upd],
                [u.after.get("meal_category") for u in plan.people_upd],
            ),
        )
    if plan.eligibility:
        conn.execute(
            "INSERT INTO meal_eligibility (person_id, category_id, valid_from, granted_by)"
            " SELECT u.p, u.c, CURRENT_DATE, %s FROM unnest(%s::bigint[], %s::bigint[]) AS u(p, c)",
            (
                actor.user_id,
                [ids[i] for i, _ in plan.eligibility],
                [c for _, c in plan.eligibility],
            ),
        )
    if plan.cards_new:
        conn.execute(
            "INSERT INTO cards (card_key, person_id)"
            " SELECT * FROM unnest(%s::text[], %s::bigint[])",
            ([k for k, _ in plan.cards_new], [ids[i] for _, i in plan.cards_new]),
        )
    made: list[int] = []
    if plan.accounts_new:  # after the people: a new pupil's login is their new id (D29-E)
        made = student_accounts.create_accounts(conn, actor, school,
                                                [ids[i] for i in plan.accounts_new],
                                                audited=False)  # fmt: skip
    return {
        "student_accounts_created": made,
        "class_names_created": [plan.new_classes[k] for k in keys],
        "people_created": created,
        "people_updated": updates,
        "cards_created": [k for k, _ in plan.cards_new],
    }


def _guardians(conn: Conn, actor: Principal, plan: Plan) -> dict[str, Any]:
    ids = dict(plan.guardian_ids)
    emails = list(plan.guardians_new)
    created: list[int] = []
    if emails:
        rows = conn.execute(
            "INSERT INTO users (email, password_hash, full_name, role)"
            " SELECT u.e, %s, u.n, 'guardian' FROM unnest(%s::text[], %s::text[]) AS u(e, n)"
            " RETURNING id, email",
            (NO_PASSWORD, emails, [plan.guardians_new[e] for e in emails]),
        ).fetchall()
        for uid, email in rows:
            ids[str(email)] = int(uid)
            created.append(int(uid))
    if plan.links_new:
        conn.execute(
            "INSERT INTO guardian_students (guardian_id, person_id)"
            " SELECT * FROM unnest(%s::bigint[], %s::bigint[])",
            ([ids[e] for e, _ in plan.links_new], [p for _, p in plan.links_new]),
        )
    return {
        "guardians_created": created,
        "links_created": [[ids[e], p] for e, p in plan.links_new],
    }
