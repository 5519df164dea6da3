"""A device's life as the caller may see it: find one in scope, register one, give it a claim
token, revoke its broker account, delete it (docs/provisioning.md). The API's device and
provisioning routes and the console's fleet pages (cloud/console/fleet*.py) call these, so both
apply one set of rules; the broker is asked for only once the device is known to be in scope
(``broker`` is called then), so a device outside it is "not found" whatever the broker's state.

Functions take the request's connection and do not commit (the request's transaction does)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg

from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import NotFound
from cloud.provisioning import service
from cloud.provisioning.dynsec import BrokerAccounts

Conn = psycopg.Connection[Any]
Broker = Callable[[], BrokerAccounts]


def visible(conn: Conn, p: Principal, device_id: str) -> dict[str, Any]:
    """The device's row when its school is in the caller's scope; NotFound otherwise."""
    row = store.get(conn, "devices", device_id)
    ids = scope.school_ids(conn, p)
    if ids is not None and row["school_id"] not in ids:
        raise NotFound(f"device {device_id} not found")
    return row


def register(conn: Conn, p: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """A new device of a school in the caller's scope (D4: events of unregistered devices are
    quarantined). The id of a device another school deleted is refused (Conflict)."""
    scope.require_school(conn, p, values["school_id"])
    service.check_reusable(conn, values["id"], values["school_id"])
    return store.insert(conn, p, "devices", values)


def claim_token(conn: Conn, p: Principal, device_id: str, ttl_s: int) -> tuple[str, datetime]:
    """A one-time token the board trades for its broker account (shown once; audited)."""
    school = str(visible(conn, p, device_id)["school_id"])
    return service.create_claim_token(conn, p, device_id, school, ttl_s)


def delete(conn: Conn, p: Principal, device_id: str, broker: Broker) -> dict[str, Any]:
    """Delete a device that never sent an event and disable its broker account (Conflict when
    it has events; a broker failure raises and the transaction rolls the delete back)."""
    visible(conn, p, device_id)
    return service.delete_device(conn, p, broker(), device_id)


def _retired_school(conn: Conn, p: Principal, device_id: str) -> str | None:
    """The school of a deleted device in the caller's scope; None otherwise."""
    school = service.retired_school(conn, device_id)
    ids = scope.school_ids(conn, p)
    if school is None or (ids is not None and school not in ids):
        return None
    return school


def revoke(conn: Conn, p: Principal, device_id: str, broker: Broker) -> dict[str, Any]:
    """Disable the board's broker account and void unused claim tokens (Conflict when there is
    nothing to revoke); on a deleted device of the caller's schools, disable it again."""
    retired = _retired_school(conn, p, device_id)
    school = retired or str(visible(conn, p, device_id)["school_id"])
    accounts = broker()
    if retired is not None:
        return service.revoke_retired(conn, p, accounts, device_id, retired)
    return service.revoke(conn, p, accounts, device_id, school)
