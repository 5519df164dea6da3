"""Fail loudly on a broker that grants a subscription and then delivers nothing (issue #18, D29-C).

The ingest's ``$share/`` subscription and the board workers' reliance on retained statuses for
wildcard subscriptions are features only Mosquitto gives here: amqtt, NATS and RabbitMQ 3.10 grant
a ``$share/`` SUBACK and then deliver nothing, and RabbitMQ 3.10 does not deliver retained
messages to wildcard subscriptions (research/scale.md). Pointed at such a broker, a process would
sit connected and silent. So before it relies on one of them, the process asks the broker to do
it once on a private topic, ``{prefix}/v1/probe/{nonce}/...``, with a deadline:

- shared subscriptions: subscribe ``$share/{group}/{topic}``, publish one QoS 1 message to
  ``topic``, expect it back;
- retained to wildcards: publish a retained QoS 1 message, subscribe to the wildcard that covers
  it, expect it back flagged retained; then clear it (an empty retained publish).

Nothing back within the deadline is :class:`BrokerFeatureMissing` (a start-up error: one line,
exit code 2). A refused probe subscription (an ACL that does not allow the probe topic) proves
nothing either way: the check is skipped with a warning, and the process starts.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud.startup import EXIT_CONFIG, StartupError

log = logging.getLogger("qadam.broker")

DEFAULT_DEADLINE_S = 5.0


class BrokerFeatureMissing(StartupError):
    """The broker accepted a subscription the process relies on and then delivered nothing."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_CONFIG)


class ProbeUnavailable(Exception):
    """The probe could not run (no connection, or the probe subscription was refused)."""


def _client(host: str, port: int, user: str | None, password: str | None) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"qadam-probe-{secrets.token_hex(6)}",
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    if user is not None:
        c.username_pw_set(user, password)
    return c


def _round_trip(
    host: str,
    port: int,
    user: str | None,
    password: str | None,
    subscription: str,
    before_subscribe: Callable[[mqtt.Client], None] | None,
    after_subscribe: Callable[[mqtt.Client], None] | None,
    want: Callable[[mqtt.MQTTMessage], bool],
    deadline_s: float,
) -> bool:
    """Connect, run ``before_subscribe``, subscribe QoS 1, run ``after_subscribe``; True when a
    message ``want`` accepts arrives within ``deadline_s``. Raises ProbeUnavailable when the
    connection or the subscription is refused."""
    got = threading.Event()
    connected = threading.Event()
    subscribed = threading.Event()
    refused: list[str] = []
    c = _client(host, port, user, password)

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if getattr(rc, "is_failure", False):
            refused.append(f"connection refused: {rc}")
        connected.set()

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode],
                     _p: Properties) -> None:  # fmt: skip
        if any(code.is_failure for code in codes):
            refused.append(f"subscription {subscription!r} refused")
        subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if want(msg):
            got.set()

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    end = time.monotonic() + deadline_s
    try:
        c.connect(host, port, keepalive=30)
    except OSError as e:
        raise ProbeUnavailable(f"cannot connect to {host}:{port}: {e}") from e
    c.loop_start()
    try:
        if not connected.wait(max(0.1, end - time.monotonic())) or refused:
            raise ProbeUnavailable(refused[0] if refused else "no CONNACK")
        if before_subscribe is not None:
            before_subscribe(c)
        c.subscribe(subscription, qos=1)
        if not subscribed.wait(max(0.1, end - time.monotonic())) or refused:
            raise ProbeUnavailable(refused[0] if refused else "no SUBACK")
        if after_subscribe is not None:
            after_subscribe(c)
        return got.wait(max(0.1, end - time.monotonic()))
    finally:
        c.disconnect()
        c.loop_stop()


def probe_topic(prefix: str) -> str:
    return f"{prefix}/v1/probe/{secrets.token_hex(8)}"


def check_shared_subscriptions(
    host: str, port: int, prefix: str, group: str, *, user: str | None = None,
    password: str | None = None, deadline_s: float = DEFAULT_DEADLINE_S,
) -> bool:  # fmt: skip
    """Raise BrokerFeatureMissing if ``$share/{group}/...`` is granted but delivers nothing.
    Returns True when checked and working, False when the probe could not run (logged)."""
    topic = probe_topic(prefix) + "/share"
    nonce = secrets.token_bytes(8)
    try:
        ok = _round_trip(
            host, port, user, password, f"$share/{group}/{topic}", None,
            lambda c: c.publish(topic, nonce, qos=1).wait_for_publish(deadline_s),
            lambda m: m.payload == nonce, deadline_s,
        )  # fmt: skip
    except ProbeUnavailable as e:
        log.warning("broker check of shared subscriptions skipped: %s", e)
        return False
    if not ok:
        raise BrokerFeatureMissing(
            f"the broker at {host}:{port} granted the shared subscription $share/{group}/... and"
            f" then delivered nothing within {deadline_s:g} s: it does not support shared"
            " subscriptions (only Mosquitto does here). Unset QADAM_INGEST_SHARED_GROUP, or use"
            " QADAM_BROKER_KIND=rabbitmq for a RabbitMQ cluster (docs/decisions.md D29-C)"
        )
    return True


def check_retained_wildcards(
    host: str, port: int, prefix: str, *, user: str | None = None,
    password: str | None = None, deadline_s: float = DEFAULT_DEADLINE_S,
) -> bool:  # fmt: skip
    """Raise BrokerFeatureMissing if a retained message is not delivered to a wildcard
    subscription that covers it. Returns True when checked and working, False when the probe
    could not run (logged)."""
    base = probe_topic(prefix)
    topic = f"{base}/status"
    nonce = secrets.token_bytes(8)

    def publish_retained(c: mqtt.Client) -> None:
        c.publish(topic, nonce, qos=1, retain=True).wait_for_publish(deadline_s)

    try:
        ok = _round_trip(
            host, port, user, password, f"{base}/+", publish_retained, None,
            lambda m: m.payload == nonce and bool(m.retain), deadline_s,
        )  # fmt: skip
    except ProbeUnavailable as e:
        log.warning("broker check of retained messages skipped: %s", e)
        return False
    finally:
        _clear_retained(host, port, user, password, topic, deadline_s)
    if not ok:
        raise BrokerFeatureMissing(
            f"the broker at {host}:{port} did not deliver a retained message to a wildcard"
            f" subscription within {deadline_s:g} s: the board workers would never see the"
            " boards' retained statuses after a restart (RabbitMQ 3.10 behaves so). Use"
            " Mosquitto for the workers' broker (docs/decisions.md D29-C)"
        )
    return True


def _clear_retained(host: str, port: int, user: str | None, password: str | None,
                    topic: str, deadline_s: float) -> None:  # fmt: skip
    c = _client(host, port, user, password)
    try:
        c.connect(host, port, keepalive=30)
        c.loop_start()
        c.publish(topic, b"", qos=1, retain=True).wait_for_publish(deadline_s)
        c.disconnect()
        c.loop_stop()
    except (OSError, RuntimeError, ValueError):
        log.warning("could not clear the retained probe message on %s", topic)
