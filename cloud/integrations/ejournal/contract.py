"""What an e-journal adapter is: it takes one school's day and answers how it went.

A new e-journal platform in a region needs one new class with ``push_day`` (and its settings),
not a new system: building the day (day.py), queueing it through the outbox (handler.py, job.py)
and the OAuth2 client side (oauth.py) stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class PupilDay:
    person_id: int  # ours
    external_id: str | None  # the pupil's id at the e-journal (the import's external_id)
    class_name: str | None
    present: bool  # passed the entrance that day
    first_in: datetime | None
    last_out: datetime | None
    late_minutes: int  # 0: on time (or absent); else minutes after the school's start


@dataclass(frozen=True)
class SchoolDay:
    school_id: str  # ours
    external_school_id: str  # the e-journal's
    day: date
    starts_at: str  # "HH:MM", local: who entered later is late
    pupils: list[PupilDay] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        def t(x: datetime | None) -> str | None:
            return None if x is None else x.isoformat()

        return {
            "school_id": self.external_school_id,
            "date": self.day.isoformat(),
            "starts_at": self.starts_at,
            "pupils": [
                {
                    "id": p.external_id,
                    "qadam_id": p.person_id,
                    "class": p.class_name,
                    "present": p.present,
                    "first_in": t(p.first_in),
                    "last_out": t(p.last_out),
                    "late_minutes": p.late_minutes,
                }  # fmt: skip
                for p in self.pupils
            ],
        }


@dataclass(frozen=True)
class Accepted:
    reference: str | None = None  # what the e-journal calls the stored day, if it says


class TransientError(Exception):
    """Worth retrying: the e-journal or the network is down, slow or overloaded."""


class PermanentError(Exception):
    """No retry can succeed: refused credentials, a school or payload the e-journal rejects."""


class Adapter(Protocol):
    name: str

    def push_day(self, day: SchoolDay, idempotency_key: str) -> Accepted:
        """Store the school's day at the e-journal (replacing what an earlier push of the same
        day stored). Raises TransientError or PermanentError. Must pass the key on: the same
        key twice stores the day once."""
