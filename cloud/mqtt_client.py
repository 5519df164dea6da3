"""The paho MQTT 3.1.1 client set-up of the workers (the ingest has its own: cloud/mqtt/)."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.settings import Settings


def make_client(
    settings: Settings,
    client_id: str,
    handler: Any,
    *,
    clean_session: bool,
    manual_ack: bool = False,
) -> mqtt.Client:
    """A paho client with our credentials and reconnect policy, whose callbacks are the
    ``_on_connect``/``_on_disconnect``/``_on_subscribe``/``_on_message`` methods of ``handler``."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if settings.mqtt_user is not None:
        client.username_pw_set(settings.mqtt_user, settings.mqtt_password)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.on_connect = handler._on_connect
    client.on_disconnect = handler._on_disconnect
    client.on_subscribe = handler._on_subscribe
    client.on_message = handler._on_message
    return client
