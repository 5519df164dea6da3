"""The contract a Social Wallet connector implements (docs/social-wallet.md).

No public API of the state "Social Wallet" system is known. Everything on our side (outbox,
retries, the ledger, reconciliation, the API) talks to this interface only; ``HttpConnector``
(cloud/socialwallet/http.py) implements it for the HTTPS JSON contract in the docs, and a real
connector for whatever the state system turns out to speak implements the same two methods.

Rules every implementation keeps:

* ``submit`` is idempotent per ``idempotency_key``: submitting the same key again must not create
  a second record at the receiver; it answers ``Accepted`` with the *original* reference
  (``duplicate=True``) or the original ``Rejected``.
* A final answer is ``Accepted`` or ``Rejected``. Anything that leaves the outcome unknown
  (timeouts, connection errors, 5xx, throttling, bad credentials) raises ``TransientError``: the
  outbox retries with backoff, and reconciliation asks ``status`` later.
* ``status`` answers what the receiver knows about a key: ``Accepted``, ``Rejected`` or ``None``
  (never received).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

MealCategory = Literal["free", "reduced", "paid"]
CATEGORIES: tuple[MealCategory, ...] = ("free", "reduced", "paid")


class TransientError(Exception):
    """The outcome is unknown or the receiver could not take it now: retry later."""


@dataclass(frozen=True)
class Reason:
    code: str
    message: str = ""


@dataclass(frozen=True)
class Accepted:
    reference: str
    duplicate: bool = False  # the receiver had this key already (HTTP 409)


@dataclass(frozen=True)
class Rejected:
    reasons: tuple[Reason, ...]


Answer = Accepted | Rejected


def _amount(v: Any, field: str) -> str | None:
    if v is None:
        return None
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ValueError(f"{field}: not a decimal amount: {v!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{field}: must be a non-negative amount: {v!r}")
    return f"{d:.2f}"


@dataclass(frozen=True)
class MealRecord:
    """One meal received by one pupil: what the state system is told (docs/social-wallet.md)."""

    school_id: str
    school_bin: str | None
    person_id: int | None
    iin: str | None
    occurred_at: str  # ISO 8601 UTC, e.g. 2025-10-09T08:53:20Z
    day: str  # the school's local date, YYYY-MM-DD
    meal_category: MealCategory
    dish_id: int | None
    dish_name: str | None
    price: str | None  # decimal strings, KZT, two decimals
    pupil_paid: str | None
    subsidy: str | None
    currency: str
    device_id: str
    boot: int
    seq: int

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> MealRecord:
        """From an outbox payload (written by sw_enqueue_meal, migration 0006). Raises
        ValueError for a payload no retry can fix."""
        try:
            if p.get("v") != 1:
                raise ValueError(f"unknown payload version {p.get('v')!r}")
            cat = p["meal_category"]
            if cat not in CATEGORIES:
                raise ValueError(f"meal_category {cat!r}")
            dish = p.get("dish") or {}
            src = p["source"]
            return cls(
                school_id=str(p["school"]["id"]),
                school_bin=p["school"].get("bin"),
                person_id=p["pupil"].get("person_id"),
                iin=p["pupil"].get("iin"),
                occurred_at=str(p["occurred_at"]),
                day=str(p["day"]),
                meal_category=cat,
                dish_id=dish.get("id"),
                dish_name=dish.get("name"),
                price=_amount(p.get("price"), "price"),
                pupil_paid=_amount(p.get("pupil_paid"), "pupil_paid"),
                subsidy=_amount(p.get("subsidy"), "subsidy"),
                currency=str(p.get("currency", "KZT")),
                device_id=str(src["device_id"]),
                boot=int(src["boot"]),
                seq=int(src["seq"]),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed meal payload: {e!r}") from None

    def to_json(self, idempotency_key: str) -> dict[str, Any]:
        """The request body of the HTTP contract."""
        return {
            "idempotency_key": idempotency_key,
            "school": {"id": self.school_id, "bin": self.school_bin},
            "pupil": {"person_id": self.person_id, "iin": self.iin},
            "occurred_at": self.occurred_at,
            "day": self.day,
            "meal_category": self.meal_category,
            "dish": None if self.dish_id is None else {"id": self.dish_id, "name": self.dish_name},
            "price": self.price,
            "pupil_paid": self.pupil_paid,
            "subsidy": self.subsidy,
            "currency": self.currency,
            "source": {"device_id": self.device_id, "boot": self.boot, "seq": self.seq},
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Connector(ABC):
    """What a Social Wallet connector implements. Must be safe to call from one thread at a time
    per instance; the outbox worker owns one instance."""

    @abstractmethod
    def submit(self, record: MealRecord, idempotency_key: str) -> Answer:
        """Send one meal record. Returns the final answer or raises TransientError."""

    @abstractmethod
    def status(self, idempotency_key: str) -> Answer | None:
        """What the receiver knows about a key (None: never received). Raises TransientError."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
