"""The rows derived from newly stored events, computed in the ingest (D21).

Every new event may add to three tables in the same transaction (docs/ingest.md):
- ``attendance``: per person and *local* day of their school, the first granted ``in``, the last
  granted ``out`` and the number of granted passages;
- ``meal_receipts``: one per granted canteen tap;
- ``outbox``: one ``parent_notification`` row per board boot and run of up to ``TAPS_PER_NOTE``
  granted taps of known people (D18), naming them as ranges of seq numbers (``runs``, D22).

Both write paths (the insert statement and the bulk COPY) hand their new events, batch by batch,
to :class:`Derived`, which groups them here and writes the few resulting rows with one statement.
Doing the grouping in SQL cost the database ~3 us per event of a replay flush (a time-zone
conversion, two sorts and a group per event); here it is a dictionary update.

Local days come from the database itself (:class:`LocalDays`), so the time-zone rules are the
ones PostgreSQL applies everywhere else (reports, API), whatever a school's ``timezone`` says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from cloud.ingest.decode import Event

# Granted taps per parent-notification outbox row (at most; a run of seq numbers).
TAPS_PER_NOTE = 256

_HOUR = 3600
_DAY = 86400

# The UTC offset in seconds at the first and the last second of each hour asked for.
_HOUR_OFFSETS = """
SELECT z, h, extract(epoch FROM to_timestamp(h * 3600) AT TIME ZONE z)::int8 - h * 3600,
       extract(epoch FROM to_timestamp(h * 3600 + 3599) AT TIME ZONE z)::int8 - (h * 3600 + 3599)
FROM unnest(%s::text[], %s::int8[]) AS q(z, h)
"""
# The local day (days since 1970-01-01) of single instants, for hours in which the offset changes.
_DAYS = """
SELECT z, t, (to_timestamp(t) AT TIME ZONE z)::date - date '1970-01-01'
FROM unnest(%s::text[], %s::int8[]) AS q(z, t)
"""


class LocalDays:
    """The local day of Unix times in time zones, exactly as PostgreSQL's
    ``(to_timestamp(t) AT TIME ZONE zone)::date`` gives it, at the cost of one small query per
    flush for the hours not seen before.

    Within an hour whose first and last second have the same UTC offset, the offset holds for
    the whole hour (offsets change months apart, never twice within an hour), so the day is
    ``(t + offset) // 86400``. The rare instants of an hour in which the offset changes are asked
    for one by one. One instance per database connection: not shared between threads."""

    MAX_HOURS = 100_000  # cached (zone, hour) pairs; cleared when exceeded

    def __init__(self) -> None:
        self._offsets: dict[str, dict[int, int | None]] = {}  # zone -> hour -> offset or None
        self._exact: dict[tuple[str, int], int] = {}  # (zone, t) -> day, for those hours
        self._cached = 0

    def resolve(self, cur: psycopg.Cursor[Any], times: dict[str, set[int]]) -> None:
        """Make :meth:`day` answer for every ``t`` in ``times[zone]``."""
        if self._cached > self.MAX_HOURS:
            self._offsets.clear()
            self._exact.clear()
            self._cached = 0
        zones: list[str] = []
        hours: list[int] = []
        for zone, ts in times.items():
            known = self._offsets.setdefault(zone, {})
            for h in {t // _HOUR for t in ts}:
                if h not in known:
                    zones.append(zone)
                    hours.append(h)
        if zones:
            for zone, h, first, last in cur.execute(_HOUR_OFFSETS, (zones, hours)):
                self._offsets[zone][h] = int(first) if first == last else None
            self._cached += len(zones)
        odd_zones: list[str] = []
        odd_times: list[int] = []
        for zone, ts in times.items():
            known = self._offsets[zone]
            if None not in known.values():
                continue
            for t in ts:
                if known[t // _HOUR] is None and (zone, t) not in self._exact:
                    odd_zones.append(zone)
                    odd_times.append(t)
        if odd_zones:
            for zone, t, day in cur.execute(_DAYS, (odd_zones, odd_times)):
                self._exact[(zone, int(t))] = int(day)

    def day(self, zone: str, t: int) -> int:
        """Days since 1970-01-01 of ``t``'s local date in ``zone`` (after :meth:`resolve`)."""
        offset = self._offsets[zone][t // _HOUR]
        if offset is None:
            return self._exact[(zone, t)]
        return (t + offset) // _DAY

    def offsets(self, zone: str) -> dict[int, int | None]:
        """Hour -> UTC offset in ``zone`` (None: use :meth:`day`), for inlined hot loops."""
        return self._offsets[zone]


# One statement for whichever of the three tables get rows; each part's rows come as one JSON
# array of arrays (one parameter, dumped in C: a few hundred rows for a replay flush, a handful
# for live traffic, where binding a dozen SQL arrays per flush cost more than the rows). Rows are
# sorted so concurrent writers take row locks in the same order.
_ATTENDANCE = """
INSERT INTO attendance AS a (person_id, day, school_id, first_in, last_out, passages)
SELECT (r->>0)::int8, date '1970-01-01' + (r->>1)::int4, r->>2, to_timestamp((r->>3)::int8),
       to_timestamp((r->>4)::int8), (r->>5)::int4
FROM json_array_elements(%s::json) WITH ORDINALITY AS j(r, i)
ORDER BY j.i
ON CONFLICT (person_id, day) DO UPDATE
   SET first_in = LEAST(a.first_in, EXCLUDED.first_in),
       last_out = GREATEST(a.last_out, EXCLUDED.last_out),
       passages = a.passages + EXCLUDED.passages,
       updated_at = now()"""
_MEALS = """
INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id, meal_category,
                           occurred_at, day, dish_id)
SELECT m.device_id, m.boot, m.seq, m.school_id, m.person_id, p.meal_category,
       to_timestamp(m.t), date '1970-01-01' + m.day, dd.id
FROM (SELECT r->>0 AS device_id, (r->>1)::int8 AS boot, (r->>2)::int8 AS seq,
             r->>3 AS school_id, (r->>4)::int8 AS person_id, (r->>5)::int8 AS t,
             (r->>6)::int4 AS day, (r->>7)::int8 AS dish, j.i
      FROM json_array_elements(%s::json) WITH ORDINALITY AS j(r, i)) m
LEFT JOIN people p ON p.id = m.person_id
-- the dish the board reported, if it is one of this school's (else NULL, never an error)
LEFT JOIN dishes dd ON dd.school_id = m.school_id AND dd.id = m.dish
ORDER BY m.i
ON CONFLICT (device_id, boot, seq) DO NOTHING"""
# A not_passed event withdraws its tap's passage (migration 0017): the withdrawal is kept, and the
# attendance of the person and local day of each withdrawn tap that is stored is counted again
# from the stored taps that still mean a passage (no row left: the day had none).
_WITHDRAW = """
INSERT INTO passage_withdrawals (device_id, boot, seq, by_seq)
SELECT r->>0, (r->>1)::int8, (r->>2)::int8, (r->>3)::int8
FROM json_array_elements(%s::json) WITH ORDINALITY AS j(r, i)
ORDER BY j.i
ON CONFLICT DO NOTHING"""
_RECOUNT = """
WITH w AS (
    SELECT r->>0 AS device_id, (r->>1)::int8 AS boot, (r->>2)::int8 AS seq
    FROM json_array_elements(%s::json) AS j(r)
), tap AS (
    SELECT DISTINCT e.person_id, (e.occurred_at AT TIME ZONE s.timezone)::date AS day,
           s.timezone AS zone
    FROM w JOIN events e ON e.device_id = w.device_id AND e.boot = w.boot AND e.seq = w.seq
    JOIN schools s ON s.id = e.school_id
    WHERE e.person_id IS NOT NULL AND e.reader IN ('in', 'out')
), agg AS (
    SELECT t.person_id, t.day,
           min(e.occurred_at) FILTER (WHERE e.reader = 'in') AS first_in,
           max(e.occurred_at) FILTER (WHERE e.reader = 'out') AS last_out,
           count(e.seq) AS passages
    FROM tap t
    LEFT JOIN events e ON e.person_id = t.person_id
         AND e.occurred_at >= t.day::timestamp AT TIME ZONE t.zone
         AND e.occurred_at < (t.day + 1)::timestamp AT TIME ZONE t.zone
         AND e.kind = 'tap' AND e.result = 'granted' AND e.reader IN ('in', 'out')
         AND NOT EXISTS (SELECT 1 FROM passage_withdrawals x WHERE x.device_id = e.device_id
                         AND x.boot = e.boot AND x.seq = e.seq)
    GROUP BY t.person_id, t.day
), gone AS (
    DELETE FROM attendance a USING agg
    WHERE a.person_id = agg.person_id AND a.day = agg.day AND agg.passages = 0
)
UPDATE attendance a
   SET first_in = agg.first_in, last_out = agg.last_out, passages = agg.passages,
       updated_at = now()
FROM agg WHERE a.person_id = agg.person_id AND a.day = agg.day AND agg.passages > 0"""
_NOTES = """
INSERT INTO outbox (kind, idempotency_key, payload)
SELECT 'parent_notification', r->>0, (r->>1)::jsonb
FROM json_array_elements(%s::json) WITH ORDINALITY AS j(r, i)
ORDER BY j.i
ON CONFLICT (idempotency_key) DO NOTHING"""

# Webhook rows (D29-I, migration 0046): one per subscriber of the school and run of taps, for
# the subscribers that want the run's kinds; a school without subscribers gets none (the join
# finds no row). The handler (cloud/webhooks/handler.py) reads the taps when it claims the row.
_WEBHOOKS = """
INSERT INTO outbox (kind, idempotency_key, payload)
SELECT 'webhook', 'wh:' || s.id || ':' || (r->>0),
       jsonb_build_object('subscription_id', s.id, 'school_id', r->>1, 'event', 'taps',
                          'kinds', to_jsonb(ARRAY(SELECT k FROM unnest(s.events) AS u(k)
                                                  WHERE k = ANY (x.kinds) ORDER BY k)),
                          'device_id', r->>2, 'boot', (r->>3)::int8, 'runs', r->4)
FROM json_array_elements(%s::json) WITH ORDINALITY AS j(r, i)
CROSS JOIN LATERAL (SELECT ARRAY(SELECT json_array_elements_text(r->5)) AS kinds) x
JOIN webhook_subscriptions s ON s.school_id = r->>1 AND s.events && x.kinds
ORDER BY j.i, s.id
ON CONFLICT (idempotency_key) DO NOTHING"""
# what a run of taps holds, as bits: a webhook subscriber chooses passages, meals or both
_PASSAGE, _MEAL = 1, 2
_KIND_NAMES = {1: ["passage"], 2: ["meal"], 3: ["meal", "passage"]}


def seq_runs(seqs: Sequence[int]) -> list[list[int]]:
    """Sorted distinct seq numbers as inclusive ranges: [1, 2, 3, 7] -> [[1, 3], [7, 7]].

    A note's payload names its taps this way (D22): a run of 256 taps as a list of numbers made
    a 4 KB jsonb that PostgreSQL compressed with pglz on every insert (~100 us a row, ~4 % of
    the database's CPU in a replay); as ranges it is a few dozen bytes."""
    runs: list[list[int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return runs


def _one_statement(parts: list[str]) -> str:
    """Data-modifying CTEs for all parts but the last, which is the statement itself."""
    if len(parts) == 1:
        return parts[0]
    ctes = ", ".join(f"p{i} AS ({sql})" for i, sql in enumerate(parts[:-1]))
    return f"WITH {ctes} {parts[-1]}"


class Derived:
    """The derived rows of a flush's new events, gathered batch by batch (so the bulk path can
    gather while PostgreSQL is busy with its COPY) and written by :meth:`write`."""

    def __init__(self, zones: dict[str, str], days: LocalDays) -> None:
        self.zones = zones  # school -> its time zone
        self.days = days
        # attendance: person, day -> [school, first in, last out, passages]
        self.att: dict[tuple[int, int], list[Any]] = {}
        self.meals: list[tuple[str, int, int, str, int | None, int, int, int | None]] = []
        # parent notifications: device, boot, run -> [school, seqs]
        self.notes: dict[tuple[str, int, int], list[Any]] = {}
        # taps withdrawn by a not_passed (stored, or in this flush): set by the writer before
        # :meth:`add`; such a tap is no passage and gets no note
        self.withdrawn: set[tuple[str, int, int]] = set()
        # the not_passed events added: device, boot, the tap's seq, their own seq
        self.pulls: list[tuple[str, int, int, int]] = []

    def prepare(self, cur: psycopg.Cursor[Any], new: Iterable[tuple[str, Sequence[Event]]]) -> None:
        """Look up the local days of these (school, events) before :meth:`add` needs them."""
        times: dict[str, set[int]] = {}
        for school, events in new:
            times.setdefault(self.zones[school], set()).update([e.t for e in events])
        self.days.resolve(cur, times)

    def add(
        self, device: str, school: str, events: Sequence[Event], persons: Sequence[int | None]
    ) -> None:
        """Gather the derived rows of new ``events`` of ``device`` (``persons[i]``: the person of
        ``events[i]``, or None). Each new event must be added exactly once."""
        zone = self.zones[school]
        days, offsets = self.days, self.days.offsets(zone)
        att, meals, notes = self.att, self.meals, self.notes
        withdrawn = self.withdrawn
        for e, person in zip(events, persons, strict=True):
            if e.result != "granted":
                continue
            reader, t = e.reader, e.t
            if reader == "canteen":
                offset = offsets[t // _HOUR]
                day = (t + offset) // _DAY if offset is not None else days.day(zone, t)
                meals.append((device, e.boot, e.seq, school, person, t, day, e.dish))
            elif e.kind != "tap":
                # only a granted tap means a person passed; a not_passed withdraws its tap's
                if e.kind == "not_passed" and e.ref is not None:
                    self.pulls.append((device, e.boot, e.ref, e.seq))
                continue
            elif withdrawn and (device, e.boot, e.seq) in withdrawn:
                continue
            if person is None:
                continue
            if reader != "canteen":
                offset = offsets[t // _HOUR]
                day = (t + offset) // _DAY if offset is not None else days.day(zone, t)
                row = att.get((person, day))
                if row is None:
                    att[(person, day)] = [school, t, None, 1] if reader == "in" else [
                        school, None, t, 1]  # fmt: skip
                else:
                    if reader == "in":
                        if row[1] is None or t < row[1]:
                            row[1] = t
                    elif row[2] is None or t > row[2]:
                        row[2] = t
                    row[3] += 1
            key = (device, e.boot, e.seq // TAPS_PER_NOTE)
            run = notes.get(key)
            kind = _MEAL if reader == "canteen" else _PASSAGE  # for webhooks (D29-I)
            if run is None:
                notes[key] = [school, [e.seq], kind]
            else:
                run[1].append(e.seq)
                run[2] |= kind

    def write(self, cur: psycopg.Cursor[Any]) -> None:
        """Store the gathered rows (one statement; nothing if there are none)."""
        parts: list[str] = []
        params: list[str] = []
        if self.att:
            parts.append(_ATTENDANCE)
            params.append(json.dumps([[k[0], k[1], *self.att[k]] for k in sorted(self.att)]))
        if self.meals:
            parts.append(_MEALS)
            params.append(json.dumps(sorted(self.meals, key=lambda m: m[:3])))
        if self.notes:
            rows = []
            hooks = []  # the same runs for the school's webhook subscribers, if any (D29-I)
            for (device, boot, _), (school, seqs, kinds) in sorted(self.notes.items()):
                seqs.sort()
                runs = seq_runs(seqs)
                payload = {"school_id": school, "device_id": device, "boot": boot,
                           "runs": runs}  # fmt: skip
                key = f"taps:{device}:{boot}:{seqs[0]}"
                rows.append([key, json.dumps(payload)])
                hooks.append([key, school, device, boot, runs, _KIND_NAMES[kinds]])
            parts.append(_NOTES)
            params.append(json.dumps(rows))
            parts.append(_WEBHOOKS)
            params.append(json.dumps(hooks))
        if parts:
            cur.execute(_one_statement(parts), params)
        if self.pulls:
            pulls = json.dumps(sorted(self.pulls))
            cur.execute(_WITHDRAW, (pulls,))
            cur.execute(_RECOUNT, (pulls,))
