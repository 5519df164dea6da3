"""An AMQP connection to one node of a RabbitMQ cluster: the nodes of ``amqp_urls`` tried in turn,
from a given one on, so a consumer whose node died moves to the next (D29-C)."""

from __future__ import annotations

import pika
import pika.exceptions

from cloud.startup import EXIT_UNAVAILABLE, StartupError

HEARTBEAT_S = 30
CONNECT_TIMEOUT_S = 5.0


def parameters(url: str) -> pika.URLParameters:
    p = pika.URLParameters(url)
    p.heartbeat = HEARTBEAT_S
    p.blocked_connection_timeout = 60
    p.socket_timeout = CONNECT_TIMEOUT_S
    p.connection_attempts = 1
    return p


def connect(urls: tuple[str, ...], start: int = 0) -> tuple[pika.BlockingConnection, int]:
    """A blocking connection to the first node, from ``urls[start]`` on, that answers, and that
    node's index; a :class:`StartupError` naming none of the passwords if no node does."""
    errors: list[str] = []
    for k in range(len(urls)):
        i = (start + k) % len(urls)
        try:
            return pika.BlockingConnection(parameters(urls[i])), i
        except pika.exceptions.AMQPError as e:
            errors.append(f"node {i + 1}: {type(e).__name__}")
    raise StartupError(
        f"no RabbitMQ node of QADAM_AMQP_URLS answers ({'; '.join(errors)})", EXIT_UNAVAILABLE
    )
