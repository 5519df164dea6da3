"""The start-up probe of the broker's features (cloud/broker/probe.py, D29-C) runs under the
cloud's own broker accounts (cloud/provisioning/service_accounts.py): each service's role lets
it use its private probe topic, so on a Mosquitto with dynamic security the probe checks instead
of being refused and skipped; and a board account still cannot touch those topics."""

from __future__ import annotations

from pathlib import Path

from cloud.broker.probe import check_retained_wildcards, check_shared_subscriptions
from cloud.provisioning import service_accounts
from cloud.provisioning.dynsec import DynSec
from tests.dynsec_broker import ADMIN, ADMIN_PW, dynsec_mosquitto

PREFIX = "qadam"


def test_every_service_account_may_run_the_probe(tmp_path: Path) -> None:
    with dynsec_mosquitto(tmp_path) as port:
        dynsec = DynSec("127.0.0.1", port, ADMIN, ADMIN_PW, PREFIX)
        files = service_accounts.setup(dynsec, tmp_path / "env")
        for process, env_file in files.items():
            env = dict(
                line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
            )
            user, password = env["QADAM_MQTT_USER"], env["QADAM_MQTT_PASSWORD"]
            checked = check_retained_wildcards(
                "127.0.0.1", port, PREFIX, user=user, password=password, deadline_s=3
            )
            assert checked is True, f"{process}: the retained probe was refused, not checked"
            if process == "ingest":
                shared = check_shared_subscriptions(
                    "127.0.0.1", port, PREFIX, "ingest", user=user, password=password,
                    deadline_s=3,
                )  # fmt: skip
                assert shared is True, "ingest: the shared-subscription probe was refused"


def test_an_account_without_the_probe_acl_is_skipped_not_failed(tmp_path: Path) -> None:
    # what the probe did before the roles had it: refused, so skipped with a warning (False);
    # never a false "feature missing"
    with dynsec_mosquitto(tmp_path) as port:
        DynSec("127.0.0.1", port, ADMIN, ADMIN_PW, PREFIX).run([
            {"command": "createRole", "rolename": "bare", "acls": []},
            {"command": "createClient", "username": "bare", "password": "bare-pw-123",
             "roles": [{"rolename": "bare"}]},
        ])  # fmt: skip
        assert check_retained_wildcards(
            "127.0.0.1", port, PREFIX, user="bare", password="bare-pw-123", deadline_s=2
        ) is False
