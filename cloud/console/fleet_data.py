"""What the fleet pages show of each board: its registration, the last status it published
(protocol.md "Status", as the whitelist worker stores it in ``device_status``), the firmware and
OTA rollout the OTA worker tracks (``device_firmware``, ``ota_targets``: the API's
``GET /api/v1/ota/fleet``), its school's newest whitelist (the drift of
``GET /api/v1/devices/drift``) and its broker account. Scope is the caller's, from
cloud/auth/scope.py, as the API's device routes apply it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]

LIMIT = 500  # boards on one page; a region's platform operator narrows with the filters

_SELECT = (
    "SELECT d.id, d.school_id, sc.name AS school_name, sc.timezone, d.place, d.mode, d.reader,"
    " d.direction, d.created_at, coalesce(ds.online, false) AS online, ds.last_seen,"
    # an offline board's status is its last will: show what it said when last online (0033)
    " coalesce(CASE WHEN ds.online THEN ds.status ELSE ds.last_online END, ds.status,"
    "   '{}'::jsonb) AS status, NOT coalesce(ds.online, false) AND ds.last_online IS NOT NULL"
    "   AS last_known, ds.wl_version AS wl_running,"
    " w.version AS wl_latest, f.version AS fw_version, f.slot AS fw_slot, f.trial,"
    " f.rolled_back, f.ota,"
    " v.version AS rollout_version, r.state AS rollout_state, t.state AS target_state,"
    " t.canary, t.detail AS target_detail, c.provisioned_at, c.revoked_at"
    " FROM devices d JOIN schools sc ON sc.id = d.school_id"
    " LEFT JOIN device_status ds ON ds.device_id = d.id"
    " LEFT JOIN device_firmware f ON f.device_id = d.id"
    " LEFT JOIN device_credentials c ON c.device_id = d.id"
    " LEFT JOIN LATERAL (SELECT max(version) AS version FROM whitelists"
    "   WHERE school_id = d.school_id) w ON true"
    " LEFT JOIN LATERAL (SELECT * FROM ota_targets x WHERE x.device_id = d.id"
    "   ORDER BY x.rollout_id DESC LIMIT 1) t ON true"
    " LEFT JOIN ota_rollouts r ON r.id = t.rollout_id"
    " LEFT JOIN ota_releases v ON v.id = r.release_id"
)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class BoardError:
    up: int | None  # uptime second it last happened
    where: str
    what: str
    times: int


@dataclass
class Board:
    id: str
    school_id: str
    school_name: str
    timezone: str
    place: str
    mode: str
    reader: str
    direction: str
    created_at: datetime
    online: bool
    last_seen: datetime | None
    status: dict[str, Any]
    last_known: bool  # offline: ``status`` is what the board said when it was last online
    wl_running: int | None
    wl_latest: int | None
    fw_version: str | None
    fw_slot: str | None
    trial: int | None
    rolled_back: str | None
    ota: dict[str, Any] | None
    rollout_version: str | None
    rollout_state: str | None
    target_state: str | None
    canary: bool | None
    target_detail: str | None
    provisioned_at: datetime | None
    revoked_at: datetime | None
    events_24h: int | None = field(default=None)

    @property
    def fw(self) -> str | None:
        """The firmware the board reports now, else the last one the OTA worker kept."""
        fw = self.status.get("fw")
        return fw if isinstance(fw, str) else self.fw_version

    @property
    def slot(self) -> str | None:
        """The OTA slot (a/b) the board runs now, else the last one the OTA worker kept."""
        slot = self.status.get("slot")
        return slot if isinstance(slot, str) else self.fw_slot

    @property
    def journal(self) -> int | None:
        return _int(self.status.get("journal"))

    @property
    def wl_behind(self) -> int | None:
        """How many whitelist versions the board is behind its school's newest (0: in sync)."""
        if self.wl_latest is None or self.wl_running is None:
            return None
        return max(0, int(self.wl_latest) - int(self.wl_running))

    @property
    def clock(self) -> dict[str, Any]:
        c = self.status.get("clock")
        return c if isinstance(c, dict) else {}

    @property
    def clock_off(self) -> int | float | None:
        off = self.clock.get("off")
        return off if isinstance(off, (int, float)) and not isinstance(off, bool) else None

    @property
    def net(self) -> dict[str, Any]:
        n = self.status.get("net")
        return n if isinstance(n, dict) else {}

    @property
    def rssi(self) -> int | None:
        return _int(self.net.get("rssi")) if self.net.get("if") == "wlan" else None

    @property
    def errors(self) -> list[BoardError]:
        out = []
        for e in self.status.get("err") or []:
            if isinstance(e, list) and len(e) == 4:
                out.append(BoardError(_int(e[0]), str(e[1])[:40], str(e[2])[:200], _int(e[3]) or 1))
        return out[-3:]

    @property
    def tls_errors(self) -> list[BoardError]:
        return [e for e in self.errors if e.where == "tls"]

    @property
    def provisioned(self) -> bool:
        return self.provisioned_at is not None and self.revoked_at is None


@dataclass(frozen=True)
class Filter:
    school: str | None = None
    mode: str | None = None
    online: bool | None = None


def boards(conn: Conn, school_ids: list[str] | None, f: Filter) -> tuple[int, list[Board]]:
    """(how many match, the first LIMIT of them) of the schools ``school_ids`` (None: every
    school), by school name and board id."""
    where = [
        "(%(ids)s::text[] IS NULL OR d.school_id = ANY(%(ids)s::text[]))",
        "(%(school)s::text IS NULL OR d.school_id = %(school)s)",
        "(%(mode)s::text IS NULL OR d.mode = %(mode)s)",
        "(%(online)s::boolean IS NULL OR coalesce(ds.online, false) = %(online)s)",
    ]
    params = {"ids": school_ids, "school": f.school, "mode": f.mode, "online": f.online}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SELECT
            + " WHERE "
            + " AND ".join(where)
            + " ORDER BY sc.name, d.id LIMIT %(limit)s",  # fmt: skip
            {**params, "limit": LIMIT},
        ).fetchall()
        total = len(rows)
        if total == LIMIT:
            n = cur.execute(
                "SELECT count(*) AS n FROM devices d"
                " LEFT JOIN device_status ds ON ds.device_id = d.id WHERE " + " AND ".join(where),
                params,
            ).fetchone()
            total = int(n["n"]) if n else total
    return total, [Board(**r) for r in rows]


def board(conn: Conn, device_id: str) -> Board | None:
    """One board with its events of the last 24 hours counted (the caller checked its scope)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + " WHERE d.id = %(id)s", {"id": device_id}).fetchone()
    if row is None:
        return None
    b = Board(**row)
    n = conn.execute(
        "SELECT count(*) FROM events WHERE device_id = %s"
        " AND occurred_at > now() - interval '1 day'",
        (device_id,),
    ).fetchone()
    b.events_24h = int(n[0]) if n else 0
    return b
