"""Fixtures of the cluster tests (D29-C): RabbitMQ nodes we start ourselves, and the cloud tests'
helpers (tests/cloud: the fake board, the seed) on the import path."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cloud"))

from rabbit_cluster import RMQ_BIN, RabbitCluster, available  # noqa: E402


def _cluster(size: int) -> Iterator[RabbitCluster]:
    # Not a skip: CI installs rabbitmq-server (./dev test), so its absence is a failure.
    assert available(), f"rabbitmq-server's scripts are not in {RMQ_BIN} (apt install it)"
    # Outside pytest's per-user base dir: the node's data folders are long-lived and large.
    work = Path(tempfile.mkdtemp(prefix="qadam-rmq-"))
    cluster = RabbitCluster(work, size=size)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        if not os.environ.get("QADAM_KEEP_RMQ"):  # set it to read the nodes' logs afterwards
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def rabbit_node() -> Iterator[RabbitCluster]:
    """One RabbitMQ node with the MQTT plugin (for checks that need no cluster)."""
    yield from _cluster(1)


@pytest.fixture
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """A fresh 3-node cluster for one test (tests that kill nodes cannot share one)."""
    yield from _cluster(3)


@pytest.fixture(scope="module")
def rabbit_cluster_module() -> Iterator[RabbitCluster]:
    """A 3-node cluster shared by the tests of one module (tests that kill no node)."""
    yield from _cluster(3)
