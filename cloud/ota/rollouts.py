"""Rollouts: a release offered to a set of boards, canaries first (docs/ota.md).

Life of a rollout: ``canary`` (only the canaries are offered the release) -> every canary
confirmed it (``done``) -> ``rolling`` (every target) -> every target confirmed or gave up ->
``done``. A canary that rolls back or fails, or that has not confirmed within
``canary_deadline_s`` of the stage's start, pauses the rollout (``paused``, with the reason); the
rest are never offered the release. ``resume`` goes back to the stage it was paused in (its clock
starts again). Targets follow the boards' status reports (:func:`on_status`); the OTA worker
(cloud/workers/ota_push.py) calls :func:`drive` periodically and sends the offers it returns.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cloud.domain.errors import Conflict, Invalid, NotFound

RESEND_S = 10  # an offer not taken up (no download started) is made again after this long
OPEN = ("pending", "offered", "downloading")  # targets still to be offered or fetching
FINAL = ("done", "rolled_back", "failed", "cancelled")
ROLLOUT_COLUMNS = (
    "r.id, r.release_id, v.version, r.state, r.stage, r.canary_deadline_s, r.stage_started_at,"
    " r.paused_reason, r.created_by, r.created_at, r.updated_at"
)


def create(conn: psycopg.Connection[Any], version: str, devices: list[str], canaries: list[str],
           deadline_s: int, actor: str) -> dict[str, Any]:  # fmt: skip
    rel = conn.execute("SELECT id FROM ota_releases WHERE version = %s", (version,)).fetchone()
    if rel is None:
        raise NotFound(f"release {version} not found")
    devices = list(dict.fromkeys(devices))
    if not devices:
        raise Invalid("devices", "at least one")
    extra = sorted(set(canaries) - set(devices))
    if extra:
        raise Invalid("canaries", f"must be among the devices: {extra}")
    known = {r[0] for r in conn.execute("SELECT id FROM devices WHERE id = ANY(%s)", (devices,))}
    missing = sorted(set(devices) - known)
    if missing:
        raise NotFound(f"devices not found: {missing}")
    busy = conn.execute(
        "SELECT t.device_id, t.rollout_id FROM ota_targets t JOIN ota_rollouts r"
        " ON r.id = t.rollout_id WHERE r.state NOT IN ('done', 'cancelled')"
        " AND t.device_id = ANY(%s) AND t.state NOT IN ('done', 'rolled_back', 'failed')",
        (devices,),
    ).fetchall()
    if busy:
        raise Conflict(f"devices already in an unfinished rollout: {sorted(busy)}")
    stage = "canary" if canaries else "rolling"
    row = conn.execute(
        "INSERT INTO ota_rollouts (release_id, state, stage, canary_deadline_s, created_by)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (rel[0], stage, stage, deadline_s, actor),
    ).fetchone()
    assert row is not None
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ota_targets (rollout_id, device_id, canary) VALUES (%s, %s, %s)",
            [(row[0], d, d in canaries) for d in devices],
        )
    return get(conn, row[0])


def get(conn: psycopg.Connection[Any], rollout_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            f"SELECT {ROLLOUT_COLUMNS} FROM ota_rollouts r JOIN ota_releases v"
            " ON v.id = r.release_id WHERE r.id = %s",
            (rollout_id,),
        ).fetchone()
        if r is None:
            raise NotFound(f"rollout {rollout_id} not found")
        r["targets"] = cur.execute(
            "SELECT device_id, canary, state, detail, offered_at, updated_at FROM ota_targets"
            " WHERE rollout_id = %s ORDER BY NOT canary, device_id",
            (rollout_id,),
        ).fetchall()
    return r


def cancel(conn: psycopg.Connection[Any], rollout_id: int, reason: str) -> dict[str, Any]:
    """End a rollout that is not done: the boards it has not reached are never offered it (a
    board on trial or downloading finishes what it started: its image decides, not the cloud)."""
    r = get(conn, rollout_id)
    if r["state"] in ("done", "cancelled"):
        raise Conflict(f"rollout {rollout_id} is {r['state']}")
    conn.execute(
        "UPDATE ota_targets SET state = 'cancelled', updated_at = now()"
        " WHERE rollout_id = %s AND state IN ('pending', 'offered')",
        (rollout_id,),
    )
    conn.execute(
        "UPDATE ota_rollouts SET state = 'cancelled', paused_reason = %s, updated_at = now()"
        " WHERE id = %s",
        (reason, rollout_id),
    )
    return get(conn, rollout_id)


def pause(conn: psycopg.Connection[Any], rollout_id: int, reason: str) -> dict[str, Any]:
    r = get(conn, rollout_id)
    if r["state"] in ("paused", "done", "cancelled"):
        raise Conflict(f"rollout {rollout_id} is {r['state']}")
    _pause(conn, rollout_id, reason)
    return get(conn, rollout_id)


def _pause(conn: psycopg.Connection[Any], rollout_id: int, reason: str) -> None:
    conn.execute(
        "UPDATE ota_rollouts SET state = 'paused', paused_reason = %s, updated_at = now()"
        " WHERE id = %s AND state IN ('canary', 'rolling')",
        (reason, rollout_id),
    )


def resume(conn: psycopg.Connection[Any], rollout_id: int) -> dict[str, Any]:
    r = get(conn, rollout_id)
    if r["state"] != "paused":
        raise Conflict(f"rollout {rollout_id} is {r['state']}, not paused")
    conn.execute(
        "UPDATE ota_rollouts SET state = stage, paused_reason = NULL, stage_started_at = now(),"
        " updated_at = now() WHERE id = %s",
        (rollout_id,),
    )
    return get(conn, rollout_id)


def target_state(doc: dict[str, Any], release_id: int, version: str) -> tuple[str, str | None]:
    """A board's status -> (target state, detail) for the release, or ("", None): says nothing
    about it."""
    got = doc.get("ota")
    ota: dict[str, Any] = got if isinstance(got, dict) else {}
    if doc.get("rb") == version:
        return "rolled_back", "the board went back to its previous image"
    if doc.get("fw") == version:
        return ("trial", None) if "trial" in doc else ("done", None)
    if ota.get("id") == release_id:
        err = ota.get("err")
        if isinstance(err, str) and err != "memory":  # out of heap: the next offer checks again
            return "failed", err
        if "reboot" in ota or "check" in ota or "off" in ota:
            return "downloading", None
    return "", None


def on_status(
    conn: psycopg.Connection[Any], device: str, doc: dict[str, Any]
) -> list[dict[str, Any]]:
    """Record a board's status; move its open targets on. -> the board's targets in rollouts that
    are not done (rollout_id, release_id, version, state, canary, rollout state), after the
    update."""
    ota = doc.get("ota")
    trial = doc.get("trial")
    conn.execute(
        "INSERT INTO device_firmware (device_id, version, slot, trial, rolled_back, ota, online)"
        " SELECT id, %s, %s, %s, %s, %s, %s FROM devices WHERE id = %s"
        " ON CONFLICT (device_id) DO UPDATE SET version = coalesce(EXCLUDED.version,"
        " device_firmware.version), slot = coalesce(EXCLUDED.slot, device_firmware.slot),"
        " trial = CASE WHEN EXCLUDED.online THEN EXCLUDED.trial ELSE device_firmware.trial END,"
        " rolled_back = CASE WHEN EXCLUDED.online THEN EXCLUDED.rolled_back"
        " ELSE device_firmware.rolled_back END,"
        " ota = CASE WHEN EXCLUDED.online THEN EXCLUDED.ota ELSE device_firmware.ota END,"
        " online = EXCLUDED.online, updated_at = now()",
        (
            doc.get("fw") if isinstance(doc.get("fw"), str) else None,
            doc.get("slot") if isinstance(doc.get("slot"), str) else None,
            trial if isinstance(trial, int) and not isinstance(trial, bool) else None,
            doc.get("rb") if isinstance(doc.get("rb"), str) else None,
            json.dumps(ota) if isinstance(ota, dict) else None,
            bool(doc.get("online")),
            device,
        ),
    )
    rows = _open_targets(conn, device)
    if not doc.get("online"):
        return rows
    changed = False
    for t in rows:
        if t["state"] in FINAL:
            continue
        st, detail = target_state(doc, t["release_id"], t["version"])
        if st and st != t["state"]:
            conn.execute(
                "UPDATE ota_targets SET state = %s, detail = %s, updated_at = now()"
                " WHERE rollout_id = %s AND device_id = %s",
                (st, detail, t["rollout_id"], device),
            )
            changed = True
    return _open_targets(conn, device) if changed else rows


def _open_targets(conn: psycopg.Connection[Any], device: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT t.rollout_id, r.release_id, v.version, t.state, t.canary, r.state AS rstate"
            " FROM ota_targets t JOIN ota_rollouts r ON r.id = t.rollout_id"
            " JOIN ota_releases v ON v.id = r.release_id"
            " WHERE t.device_id = %s AND r.state NOT IN ('done', 'cancelled')",
            (device,),
        ).fetchall()


def eligible(rollout_state: str, canary: bool) -> bool:
    """Whether a target of a rollout in this state is offered the release (and served chunks)."""
    return rollout_state == "rolling" or rollout_state == "canary" and canary


def drive(conn: psycopg.Connection[Any]) -> list[tuple[str, dict[str, Any]]]:
    """Move every active rollout on (pause on a failed or late canary, canaries -> the rest, the
    rest -> done) and return the offers to send now: (device, offer)."""
    offers: list[tuple[str, dict[str, Any]]] = []
    with conn.cursor(row_factory=dict_row) as cur:
        active = cur.execute(
            "SELECT r.id, r.state, r.release_id, v.version, v.size, v.sha256, v.signature,"
            " extract(epoch FROM now() - r.stage_started_at) > r.canary_deadline_s AS late"
            " FROM ota_rollouts r JOIN ota_releases v ON v.id = r.release_id"
            " WHERE r.state IN ('canary', 'rolling') ORDER BY r.id"
        ).fetchall()
        for r in active:
            targets = cur.execute(
                # Due: not offered within RESEND_S, and, while downloading, silent as long
                # (each window's status moves device_firmware.updated_at: a download that
                # progresses is not offered again).
                "SELECT t.device_id, t.canary, t.state, (t.offered_at IS NULL OR t.offered_at <"
                " now() - make_interval(secs => %s)) AND (t.state <> 'downloading' OR"
                " f.updated_at < now() - make_interval(secs => %s)) AS due,"
                " coalesce(f.online, false) AS online"
                " FROM ota_targets t LEFT JOIN device_firmware f ON f.device_id = t.device_id"
                " WHERE t.rollout_id = %s",
                (RESEND_S, RESEND_S, r["id"]),
            ).fetchall()
            if r["state"] == "canary":
                canaries = [t for t in targets if t["canary"]]
                bad = [t for t in canaries if t["state"] in ("rolled_back", "failed")]
                if bad:
                    _pause(conn, r["id"], "canary " + ", ".join(
                        f"{t['device_id']} {t['state']}" for t in bad))
                    continue
                if all(t["state"] == "done" for t in canaries):
                    conn.execute(
                        "UPDATE ota_rollouts SET state = 'rolling', stage = 'rolling',"
                        " stage_started_at = now(), updated_at = now() WHERE id = %s",
                        (r["id"],),
                    )
                    r["state"] = "rolling"
                elif r["late"]:
                    late = [t["device_id"] for t in canaries if t["state"] != "done"]
                    _pause(conn, r["id"], f"canary {', '.join(late)} did not confirm in time")
                    continue
            elif all(t["state"] in FINAL for t in targets):
                conn.execute(
                    "UPDATE ota_rollouts SET state = 'done', updated_at = now() WHERE id = %s",
                    (r["id"],),
                )
                continue
            offer = {"v": 1, "id": r["release_id"], "ver": r["version"], "size": r["size"],
                     "sha256": r["sha256"], "sig": r["signature"]}  # fmt: skip
            for t in targets:
                if (t["state"] in OPEN and t["due"] and t["online"]
                        and eligible(r["state"], t["canary"])):  # fmt: skip
                    conn.execute(
                        "UPDATE ota_targets SET offered_at = now(), updated_at = now(), state ="
                        " CASE WHEN state = 'pending' THEN 'offered' ELSE state END"
                        " WHERE rollout_id = %s AND device_id = %s",
                        (r["id"], t["device_id"]),
                    )
                    offers.append((t["device_id"], offer))
    return offers


def serving(conn: psycopg.Connection[Any], device: str, release_id: int) -> bool:
    """Whether the board may fetch the release's chunks now (an open target of an active
    rollout it is eligible in)."""
    for t in _open_targets(conn, device):
        if t["release_id"] == release_id and t["state"] in OPEN and eligible(
            t["rstate"], t["canary"]
        ):
            return True
    return False


def fleet(conn: psycopg.Connection[Any], school_ids: list[str] | None) -> list[dict[str, Any]]:
    """Every device (of the schools, None: all) with its reported firmware and its newest
    rollout's target state."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT d.id AS device_id, d.school_id, f.version, f.slot, f.trial,"
            " f.rolled_back, f.ota, coalesce(f.online, false) AS online, f.updated_at,"
            " t.rollout_id, v.version AS rollout_version, r.state AS rollout_state,"
            " t.state AS target_state, t.canary, t.detail"
            " FROM devices d LEFT JOIN device_firmware f ON f.device_id = d.id"
            " LEFT JOIN LATERAL (SELECT * FROM ota_targets x WHERE x.device_id = d.id"
            "   ORDER BY x.rollout_id DESC LIMIT 1) t ON true"
            " LEFT JOIN ota_rollouts r ON r.id = t.rollout_id"
            " LEFT JOIN ota_releases v ON v.id = r.release_id"
            " WHERE %s::text[] IS NULL OR d.school_id = ANY(%s::text[])"
            " ORDER BY d.school_id, d.id",
            (school_ids, school_ids),
        ).fetchall()
