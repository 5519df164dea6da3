"""Resending meal records after the data was fixed (docs/social-wallet.md "Resending", D24-F).

A delivery the state system rejected (e.g. ``price_missing``: the meal was served before the
school's prices were entered) or one the outbox gave up on (``dead``) can be sent again by an
operator once the cause is fixed. A resend, in the caller's transaction:

* prices the meal if it was stored unpriced, from the price history as at the meal
  (``meal_receipt_reprice``, migration 0019), rebuilds its rollup month so the monthly report
  shows the same price, and charges a paid meal's family share then (at most once);
* rebuilds the record's body from the receipt, the school's BIN and the pupil's IIN as they are
  now (``sw_meal_payload``), under the **same idempotency key**: a receiver that already holds
  the record answers 409 (same body) or ``idempotency_key_reused`` (a changed body), which the
  handler turns into "accepted" after asking the status endpoint, so a resend never makes a
  second record;
* puts the outbox row back in the queue (attempts start over) and the ledger row to ``pending``;
* writes one ``audit_log`` row per delivery (action ``update``, entity ``sw_deliveries``,
  ``after.resent``; before/after: state, reasons, prices).

Only ``rejected`` and ``dead`` deliveries are resent; any other state is reported as skipped
(``pending``/``sent``: already on its way; ``accepted``: done), so a second identical request
changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Invalid, NotFound

RESENDABLE = ("rejected", "dead")
BULK_MAX = 1000  # deliveries per bulk request; the answer says when more match


@dataclass
class ResendResult:
    resent: list[str] = field(default_factory=list)
    repriced: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, state)


_LOCK = """
SELECT d.idempotency_key, d.state, d.school_id, d.device_id, d.boot, d.seq, d.day, d.outbox_id,
       d.reasons, d.last_error, m.price, m.family_pays, m.device_id IS NOT NULL
FROM sw_deliveries d
LEFT JOIN meal_receipts m ON m.device_id = d.device_id AND m.boot = d.boot AND m.seq = d.seq
WHERE d.idempotency_key = ANY(%s)
ORDER BY d.idempotency_key
FOR UPDATE OF d
"""


def _amount(v: Any) -> str | None:
    return None if v is None else f"{v:.2f}"


def resend(conn: Any, actor: Principal, keys: Sequence[str]) -> ResendResult:
    """Resend the given deliveries (the caller has checked they are in its scope). Keys that do
    not exist are ignored."""
    out = ResendResult()
    months: set[tuple[str, date]] = set()
    rows = conn.execute(_LOCK, (list(keys),)).fetchall()
    for (
        key,
        state,
        school,
        device,
        boot,
        seq,
        day,
        outbox_id,
        reasons,
        error,
        price,
        paid,
        has,
    ) in rows:
        if state not in RESENDABLE:
            out.skipped.append((key, state))
            continue
        repriced = False
        if has:
            one = conn.execute(
                "SELECT meal_receipt_reprice(%s, %s, %s, %s)", (device, boot, seq, actor.user_id)
            ).fetchone()
            repriced = bool(one and one[0])
            conn.execute(
                "UPDATE outbox o SET payload = sw_meal_payload(m) FROM meal_receipts m"
                " WHERE o.id = %s AND m.device_id = %s AND m.boot = %s AND m.seq = %s",
                (outbox_id, device, boot, seq),
            )
        if repriced:
            months.add((school, day.replace(day=1)))
            out.repriced.append(key)
        conn.execute(
            "UPDATE outbox SET dead_at = NULL, delivered_at = NULL, attempts = 0,"
            " next_attempt_at = now(), last_error = NULL WHERE id = %s",
            (outbox_id,),
        )
        after = conn.execute(
            "UPDATE sw_deliveries SET state = 'pending', reasons = '[]', last_error = NULL,"
            " confirmed_at = NULL, attempts = 0, resends = resends + 1, resent_at = now(),"
            " resent_by = %s, updated_at = now() WHERE idempotency_key = %s"
            " RETURNING resends",
            (actor.user_id, key),
        ).fetchone()
        now_priced = conn.execute(
            "SELECT payload->>'price', payload->>'pupil_paid' FROM outbox WHERE id = %s",
            (outbox_id,),
        ).fetchone()
        store.audit(
            conn, actor, "update", "sw_deliveries", key,
            {"state": state, "reasons": reasons, "last_error": error,
             "price": _amount(price), "pupil_paid": _amount(paid)},
            {"state": "pending", "resent": True, "resends": after[0] if after else None,
             "repriced": repriced,
             "price": now_priced[0] if now_priced else None,
             "pupil_paid": now_priced[1] if now_priced else None},
            school_id=school,
        )  # fmt: skip
        out.resent.append(key)
    for school, month in sorted(months):
        conn.execute("SELECT refresh_meal_rollup(%s, %s)", (school, month))
    return out


def matching(
    conn: Any,
    school: str,
    *,
    state: str | None = None,
    reason: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    limit: int = BULK_MAX,
) -> tuple[list[str], bool]:
    """Keys of one school's resendable deliveries that match the filter (oldest meal first), at
    most ``limit``, and whether more match."""
    states = [state] if state else list(RESENDABLE)
    rows = conn.execute(
        "SELECT idempotency_key FROM sw_deliveries"
        " WHERE school_id = %(school)s AND state = ANY(%(states)s)"
        "   AND (%(reason)s::text IS NULL"
        "        OR reasons @> jsonb_build_array(jsonb_build_object('code', %(reason)s::text)))"
        "   AND (%(from)s::date IS NULL OR day >= %(from)s::date)"
        "   AND (%(to)s::date IS NULL OR day <= %(to)s::date)"
        " ORDER BY occurred_at, idempotency_key LIMIT %(n)s",
        {"school": school, "states": states, "reason": reason, "from": date_from,
         "to": date_to, "n": limit + 1},
    ).fetchall()  # fmt: skip
    keys = [str(r[0]) for r in rows]
    return keys[:limit], len(keys) > limit


def resend_in_scope(conn: Any, actor: Principal, keys: Sequence[str]) -> ResendResult:
    """Resend the given deliveries (the API's one-delivery route, the console's selection). A
    key that does not exist or whose school is outside the caller's scope is "not found" and
    nothing is resent."""
    rows = dict(
        conn.execute(
            "SELECT idempotency_key, school_id FROM sw_deliveries WHERE idempotency_key = ANY(%s)",
            (list(keys),),
        ).fetchall()
    )
    allowed = scope.school_ids(conn, actor)
    for key in keys:
        if key not in rows or (allowed is not None and rows[key] not in allowed):
            raise NotFound(f"delivery {key!r} not found")
    return resend(conn, actor, keys)


def resend_matching(
    conn: Any,
    actor: Principal,
    school: str,
    *,
    state: str | None = None,
    reason: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> tuple[ResendResult, bool]:
    """Resend one school's rejected and/or dead deliveries that match (at most BULK_MAX; the
    bool says more match), audited once for the request besides each delivery's row."""
    if date_from is not None and date_to is not None and date_to < date_from:
        raise Invalid("date_to", "must not be before date_from")
    if reason is not None and state == "dead":
        raise Invalid("reason", "dead deliveries have no rejection reason: leave state unset")
    scope.require_school(conn, actor, school)
    keys, more = matching(conn, school, state=state, reason=reason, date_from=date_from,
                          date_to=date_to)  # fmt: skip
    result = resend(conn, actor, keys)
    request = {"school": school, "state": state, "reason": reason,
               "date_from": date_from.isoformat() if date_from else None,
               "date_to": date_to.isoformat() if date_to else None}  # fmt: skip
    store.audit(
        conn, actor, "update", "sw_resend", school, None,
        {**request, "resent": len(result.resent), "repriced": len(result.repriced), "more": more},
        school_id=school,
    )  # fmt: skip
    return result, more
