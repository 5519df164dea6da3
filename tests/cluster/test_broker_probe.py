"""The fail-loud check (D29-C): a broker that grants a ``$share/`` subscription, or a wildcard
subscription over a retained message, and then delivers nothing stops the process at start-up
with one clear line, instead of leaving it connected and silent. Checked against the machine's
Mosquitto (which delivers both) and a RabbitMQ 3.10 node with the MQTT plugin (which delivers
neither)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rabbit_cluster import RabbitCluster

from cloud.broker.probe import (
    BrokerFeatureMissing,
    check_retained_wildcards,
    check_shared_subscriptions,
)
from cloud.broker.select import make_ingest
from cloud.ingest.service import Ingest
from cloud.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_mosquitto_delivers_both(mqtt_addr: tuple[str, int], topic_prefix: str) -> None:
    host, port = mqtt_addr
    assert check_shared_subscriptions(host, port, topic_prefix, "g1", deadline_s=5) is True
    assert check_retained_wildcards(host, port, topic_prefix, deadline_s=5) is True


def test_rabbitmq_mqtt_plugin_is_caught(rabbit_node: RabbitCluster, topic_prefix: str) -> None:
    port = rabbit_node.nodes[0].mqtt_port
    with pytest.raises(BrokerFeatureMissing, match=r"\$share/g1/.*delivered nothing"):
        check_shared_subscriptions("127.0.0.1", port, topic_prefix, "g1", deadline_s=2)
    with pytest.raises(BrokerFeatureMissing, match="retained message to a wildcard"):
        check_retained_wildcards("127.0.0.1", port, topic_prefix, deadline_s=2)


def test_unreachable_broker_skips_the_check(topic_prefix: str) -> None:
    """No broker: the probe proves nothing, so it is not the process's failure to report here
    (the ingest's own connection retries and logs)."""
    from rabbit_cluster import free_port

    port = free_port()
    assert check_shared_subscriptions("127.0.0.1", port, topic_prefix, "g", deadline_s=1) is False


def test_make_ingest_checks_only_a_shared_group(
    rabbit_node: RabbitCluster, topic_prefix: str, database_url: str
) -> None:
    port = rabbit_node.nodes[0].mqtt_port
    plain = Settings(database_url=database_url, mqtt_port=port, topic_prefix=topic_prefix,
                     broker_probe_s=2)  # fmt: skip
    assert isinstance(make_ingest(plain), Ingest)  # no $share, nothing to check
    shared = plain.model_copy(update={"ingest_shared_group": "g"})
    with pytest.raises(BrokerFeatureMissing):
        make_ingest(shared)
    off = plain.model_copy(update={"ingest_shared_group": "g", "broker_probe_s": 0})
    assert isinstance(make_ingest(off), Ingest)  # the operator turned the check off


def test_ingest_process_exits_with_one_line(
    rabbit_node: RabbitCluster, topic_prefix: str, database_url: str,
    insecure_dev_env: dict[str, str],
) -> None:  # fmt: skip
    env = {
        **os.environ, **insecure_dev_env,
        "QADAM_DATABASE_URL": database_url,
        "QADAM_MQTT_PORT": str(rabbit_node.nodes[0].mqtt_port),
        "QADAM_TOPIC_PREFIX": topic_prefix,
        "QADAM_INGEST_SHARED_GROUP": "workers",
        "QADAM_BROKER_PROBE_S": "2",
    }  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "cloud.ingest"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("qadam: the broker at 127.0.0.1:") and "$share/workers/" in last


def test_rabbitmq_settings_refuse_a_shared_group() -> None:
    with pytest.raises(ValueError, match="ingest_shared_group is for Mosquitto"):
        Settings(broker_kind="rabbitmq", amqp_urls=("amqp://127.0.0.1:5672/%2F",),
                 ingest_shared_group="g")  # fmt: skip
    with pytest.raises(ValueError, match="needs amqp_urls"):
        Settings(broker_kind="rabbitmq")


def test_board_worker_check(rabbit_node: RabbitCluster, topic_prefix: str,
                            mqtt_addr: tuple[str, int]) -> None:  # fmt: skip
    from cloud.broker.select import check_board_worker_broker

    check_board_worker_broker(Settings(mqtt_port=mqtt_addr[1], topic_prefix=topic_prefix))
    rabbit = Settings(mqtt_port=rabbit_node.nodes[0].mqtt_port, topic_prefix=topic_prefix,
                      broker_probe_s=2)  # fmt: skip
    with pytest.raises(BrokerFeatureMissing, match="retained"):
        check_board_worker_broker(rabbit)
