"""Which ingest a process runs, by ``broker_kind`` (D29-C): the MQTT ingest on Mosquitto (after
checking that a ``$share/`` group it is told to use really delivers), or the AMQP ingest on a
RabbitMQ cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloud.settings import Settings

if TYPE_CHECKING:
    from cloud.broker.amqp_ingest import AmqpIngest
    from cloud.ingest.service import Ingest


def check_broker_features(settings: Settings) -> None:
    """Fail loudly (BrokerFeatureMissing) if the MQTT ingest's shared subscription would be
    granted and then deliver nothing."""
    from cloud.broker.probe import check_shared_subscriptions

    group = settings.ingest_shared_group
    if settings.broker_kind == "mosquitto" and group and settings.broker_probe_s > 0:
        check_shared_subscriptions(
            settings.mqtt_host, settings.mqtt_port, settings.topic_prefix, group,
            user=settings.mqtt_user, password=settings.mqtt_password,
            deadline_s=settings.broker_probe_s,
        )  # fmt: skip


def check_board_worker_broker(settings: Settings) -> None:
    """For the board workers (cloud/workers/board_worker.py), whose status consumer relies on
    the boards' retained statuses reaching a wildcard subscription: fail loudly
    (BrokerFeatureMissing) on a broker that does not deliver them (RabbitMQ 3.10). To be called
    before such a worker starts."""
    from cloud.broker.probe import check_retained_wildcards

    if settings.broker_probe_s > 0:
        check_retained_wildcards(
            settings.mqtt_host, settings.mqtt_port, settings.topic_prefix,
            user=settings.mqtt_user, password=settings.mqtt_password,
            deadline_s=settings.broker_probe_s,
        )  # fmt: skip


def make_ingest(settings: Settings) -> Ingest | AmqpIngest:
    if settings.broker_kind == "rabbitmq":
        from cloud.broker.amqp_ingest import AmqpIngest

        return AmqpIngest(settings)
    from cloud.ingest.service import Ingest

    check_broker_features(settings)
    return Ingest(settings)
