"""The console's Audit log page (issue #15, D28-F): the changes in the caller's scope, newest
first, filtered by actor, action, object and time, keyset-paged; each row named in words with
the raw before/after expandable. Who may read it and which rows: the API's (AuditReader,
cloud/domain/audit_log.py)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from cloud.api.deps import ConnDep
from cloud.auth.principal import Role
from cloud.console import i18n, nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.web import render
from cloud.domain import audit_log

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])

READERS: tuple[Role, ...] = ("platform_admin", "school_admin")  # cloud/api/deps.py AuditReader
nav.register("/audit", N_("Audit log"), READERS, 90)
PAGE_SIZE = 50

ACTION_NAMES = {"create": N_("created"), "update": N_("changed"), "delete": N_("deleted"),
                "revoke": N_("revoked"), "withdraw": N_("withdrew"), "link": N_("linked"),
                "unlink": N_("unlinked"), "login": N_("signed in"),
                "logout": N_("signed out")}  # fmt: skip
# the objects the code audits (cloud/domain/store.py callers); an unknown one shows as stored
ENTITY_NAMES = {
    "users": N_("user"),
    "people": N_("person"),
    "cards": N_("card"),
    "classes": N_("class"),
    "schools": N_("school"),
    "districts": N_("district"),
    "regions": N_("region"),
    "devices": N_("reader"),
    "device_credentials": N_("reader's credentials"),
    "device_commands": N_("reader command"),
    "dishes": N_("dish"),
    "menus": N_("menu"),
    "meal_categories": N_("meal category"),
    "meal_ratings": N_("meal rating"),
    "allergen_restrictions": N_("allergen restriction"),
    "consents": N_("consent"),
    "guardian_students": N_("guardian and pupil"),
    "guardian_invitations": N_("guardian invitation"),
    "imports": N_("import"),
    "reports": N_("monthly report"),
    "report_anomaly_acks": N_("cross-check anomaly acknowledged"),
    "sw_deliveries": N_("Social Wallet record"),
    "sw_resend": N_("Social Wallet resend request"),
    "ota_releases": N_("firmware release"),
    "ota_rollouts": N_("firmware rollout"),
    "push_subscriptions": N_("notification subscription"),
    "ledger_entry": N_("balance entry"),
}
ERRORS = {
    "time": N_("The time is not a date and time."),
    "order": N_("The start is after the end."),
    "action": N_("Unknown action."),
    "page": N_("That page link is broken."),
}


def _local(value: str | None) -> datetime | None:
    """A ``datetime-local`` field: the console's time zone (Asia/Almaty)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=i18n.ZONE)


def _raw(row: dict[str, Any]) -> str:
    return json.dumps({"before": row["before"], "after": row["after"]}, ensure_ascii=False,
                      indent=2, sort_keys=True)  # fmt: skip


Q = Annotated[str | None, Query(max_length=200)]


@router.get("/audit")
def audit_page(
    request: Request, conn: ConnDep, user: ConsoleUser, actor: Q = None, action: Q = None,
    entity: Q = None, entity_id: Q = None, since: Q = None, until: Q = None, before: Q = None,
) -> Response:  # fmt: skip
    require_role(user, READERS)
    lang = _lang(request, conn, user)
    form = {"actor": (actor or "").strip(), "action": action or "", "entity": entity or "",
            "entity_id": (entity_id or "").strip(), "since": since or "",
            "until": until or ""}  # fmt: skip
    errors: list[str] = []
    t_since = t_until = None
    try:
        t_since, t_until = _local(since), _local(until)
    except ValueError:
        errors.append(ERRORS["time"])
    if t_since and t_until and t_since > t_until:
        errors.append(ERRORS["order"])
    if action and action not in audit_log.ACTIONS:
        errors.append(ERRORS["action"])
    before_id = None
    if before:
        if before.isdigit() and 0 < int(before) < 2**63:
            before_id = int(before)
        else:
            errors.append(ERRORS["page"])
    rows: list[dict[str, Any]] = []
    next_id = None
    if not errors:
        f = audit_log.AuditFilter(form["actor"] or None, action or None, entity or None,
                                  form["entity_id"] or None, t_since, t_until)  # fmt: skip
        rows, next_id = audit_log.rows_in_scope(conn, user, f, before_id, PAGE_SIZE)
    query = {k: v for k, v in form.items() if v}
    next_url = "/audit?" + urlencode({**query, "before": next_id}) if next_id else None
    return render(request, "audit.html", lang, status_code=422 if errors else 200, user=user,
                  nav=_nav(user), form=form, errors=errors, rows=rows, next_url=next_url,
                  actions=ACTION_NAMES, entities=ENTITY_NAMES, raw=_raw,
                  first_page=before is None)  # fmt: skip
