"""The cloud's own broker accounts (issue #18, D28-L): one per process that talks to the
boards, each with a role that allows exactly the topics that process uses (protocol.md
"Topics"), made through the dynamic-security plugin by ``qadam broker-accounts``. One place
says what each service may do; the deployment (deploy/) and the tests use it.

Service accounts are never named ``board.*`` (that namespace is the boards', D24-A)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from cloud.provisioning.dynsec import DynSec, is_board_username

# account -> (topics it subscribes to, topics it publishes), as leaves under {prefix}/v1/dev/+/
SERVICES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # the ingest reads every board's events (also through a shared subscription) and statuses
    "qadam-ingest": (("events", "status"), ("ack",)),
    # board workers (cloud/workers/board_worker.py): each reads statuses, may send the
    # clock-floor command, and has its own leaves
    "qadam-whitelist": (("status", "wl/req"), ("wl", "cmd")),
    "qadam-balance": (("status",), ("bal", "cmd")),
    "qadam-commands": (("status", "cmd/res"), ("cmd",)),
    "qadam-ota": (("status", "ota/req"), ("ota", "ack", "cmd")),
}
# process (cloud/supervisor.py, deploy/systemd) -> its account
PROCESS_ACCOUNT = {
    "ingest": "qadam-ingest",
    "whitelist": "qadam-whitelist",
    "balance": "qadam-balance",
    "commands": "qadam-commands",
    "ota": "qadam-ota",
}


def role_of(account: str) -> str:
    return "svc-" + account.removeprefix("qadam-")


def acls(prefix: str, account: str) -> list[dict[str, Any]]:
    base = f"{prefix}/v1/dev/+/"
    subs, pubs = SERVICES[account]
    out = [{"acltype": "subscribePattern", "topic": base + leaf, "allow": True} for leaf in subs]
    if "events" in subs:  # several ingests share the events: $share/<group>/...
        out.append({"acltype": "subscribePattern", "topic": f"$share/+/{base}events",
                    "allow": True})  # fmt: skip
    out += [{"acltype": "publishClientSend", "topic": base + leaf, "allow": True} for leaf in pubs]
    # the start-up probe of the broker's features (cloud/broker/probe.py, D29-C): a private
    # topic of the process's own, so a broker that silently drops a feature is caught
    probe = f"{prefix}/v1/probe/#"
    out += [{"acltype": "subscribePattern", "topic": probe, "allow": True},
            {"acltype": "publishClientSend", "topic": probe, "allow": True}]  # fmt: skip
    if "events" in subs:
        out.append({"acltype": "subscribePattern", "topic": f"$share/+/{probe}", "allow": True})
    return out


def commands(prefix: str, passwords: dict[str, str]) -> list[dict[str, Any]]:
    """The dynamic-security commands that (re)create every service role and account: roles are
    deleted and made again so that their ACLs are exactly ``SERVICES``'s; accounts get the given
    passwords."""
    cmds: list[dict[str, Any]] = []
    for account in SERVICES:
        assert not is_board_username(account)
        role = role_of(account)
        cmds += [
            {"command": "deleteRole", "rolename": role},
            {"command": "createRole", "rolename": role, "acls": acls(prefix, account)},
            {"command": "deleteClient", "username": account},
            {"command": "createClient", "username": account, "password": passwords[account],
             "roles": [{"rolename": role}]},
        ]  # fmt: skip
    return cmds


def setup(dynsec: DynSec, out_dir: Path) -> dict[str, Path]:
    """Make every service account with a new random password and write, per process,
    ``broker-<process>.env`` (mode 0600) holding QADAM_MQTT_USER and QADAM_MQTT_PASSWORD for its
    systemd unit. Returns process -> file."""
    passwords = {a: secrets.token_urlsafe(24) for a in SERVICES}
    responses = dynsec.run(commands(dynsec.prefix, passwords))
    for r in responses:  # a missing role or client to delete is expected the first time
        err = r.get("error")
        if err and r.get("command") not in ("deleteRole", "deleteClient"):
            raise RuntimeError(f"broker refused {r.get('command')}: {err}")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for process, account in PROCESS_ACCOUNT.items():
        path = out_dir / f"broker-{process}.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"QADAM_MQTT_USER={account}\nQADAM_MQTT_PASSWORD={passwords[account]}\n")
        os.chmod(path, 0o600)
        files[process] = path
    return files
