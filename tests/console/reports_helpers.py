"""Helpers of the Reports, Social Wallet and Audit page tests (D28-F): a month of school s1 whose
meal report's cross-check finds two anomalies, and meal records in the Social Wallet ledger."""

from __future__ import annotations

from typing import Any

import psycopg

MONTH = "2025-10"
DAY = "2025-10-09"


def populate_month(database_url: str, ids: dict[str, Any]) -> None:
    """School s1, 9 October 2025: Alice (free meals) got a meal but was not seen at the door
    (meal recorded, pupil not on site); Amir (free meals) came in at 08:40 and got none (eligible
    pupil present, not fed). Two meals of Alice on the 10th, present, are fine."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE people SET meal_category = 1 WHERE id = ANY(%s)",
            ([ids["alice"], ids["amir"]],),
        )
        conn.execute(
            "INSERT INTO attendance (person_id, day, school_id, first_in, last_out, passages)"
            " VALUES (%s, %s, 's1', (%s::date + time '08:40') AT TIME ZONE 'Asia/Almaty', NULL, 1),"
            " (%s, '2025-10-10', 's1', '2025-10-10 08:20' AT TIME ZONE 'Asia/Almaty', NULL, 1)",
            (ids["amir"], DAY, DAY, ids["alice"]),
        )
        for seq, day, hour in ((501, DAY, "12:10"), (502, "2025-10-10", "12:05")):
            conn.execute(
                "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
                " meal_category, occurred_at, day) VALUES ('gate-1', 1, %s, 's1', %s, 1,"
                " (%s::date + %s::time) AT TIME ZONE 'Asia/Almaty', %s)",
                (seq, ids["alice"], day, hour, day),
            )


def reject_deliveries(database_url: str, code: str = "price_missing") -> list[str]:
    """The Social Wallet rejected s1's meal records (as the fake receiver does): their keys."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "UPDATE sw_deliveries SET state = 'rejected', confirmed_at = now(), attempts = 1,"
            " reasons = jsonb_build_array(jsonb_build_object('code', %s::text, 'message',"
            " 'from the receiver')) WHERE school_id = 's1' RETURNING idempotency_key",
            (code,),
        ).fetchall()
    return sorted(str(r[0]) for r in rows)
