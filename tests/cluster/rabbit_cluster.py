"""A real 3-node RabbitMQ cluster on loopback for tests and benchmarks (issue #18, D29-C).

Each node has its own node name, AMQP/MQTT/distribution ports, Erlang cookie and data folder
under ``workdir``, so several clusters (xdist workers) and the machine's own node on 5672 live
side by side. The nodes run from the Debian package's own scripts in its lib folder
(``/usr/lib/rabbitmq/bin``): the sbin wrappers switch to the ``rabbitmq`` user and its cookie.
Every node is started in a new session, so ``kill()`` and ``stop()`` end its whole process
group by the PID we started, and nothing else.

Plugins: MQTT (``mqtt.durable_queue_type = quorum``: a QoS 1 subscriber's queue, and what a
PUBACK waits for, is replicated) and the consistent-hash exchange the AMQP ingest partitions with.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

RMQ_BIN = Path(os.environ.get("QADAM_RMQ_BIN", "/usr/lib/rabbitmq/bin"))
PLUGINS = ("rabbitmq_mqtt", "rabbitmq_consistent_hash_exchange")


def available() -> bool:
    """True when the Debian rabbitmq-server package (with its lib-folder scripts) is installed."""
    return (RMQ_BIN / "rabbitmq-server").exists() and (RMQ_BIN / "rabbitmqctl").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    index: int
    name: str  # e.g. "q1a2b3c4r1@localhost"
    amqp_port: int
    mqtt_port: int
    dist_port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    killed: bool = False

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"


@dataclass
class RabbitCluster:
    workdir: Path
    size: int = 3
    mqtt_prefetch: int = 1000
    extra_conf: str = ""
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tag = "q" + secrets.token_hex(4)
        self.cookie = secrets.token_hex(16).upper()
        for i in range(1, self.size + 1):
            self.nodes.append(
                Node(
                    i,
                    f"{tag}r{i}@localhost",
                    free_port(),
                    free_port(),
                    free_port(),
                    self.workdir / f"r{i}",
                )  # fmt: skip
            )
        cookie = self.workdir / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)

    # -- start and stop ------------------------------------------------------------------

    def _env(self, node: Node) -> dict[str, str]:
        conf = node.folder / "conf"
        return {
            **os.environ,
            "HOME": str(self.workdir),  # where the CLI and the node read .erlang.cookie
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(conf / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(conf / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.folder / "log"),
            "RABBITMQ_PID_FILE": str(node.folder / "pid"),
            # one scheduler per node: three nodes share the machine's two cores with the rest
            "RABBITMQ_SERVER_ERL_ARGS": "+S 1:1 +A 8",
        }

    def _write_conf(self, node: Node) -> None:
        conf = node.folder / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        peers = "\n".join(
            f"cluster_formation.classic_config.nodes.{n.index} = {n.name}" for n in self.nodes
        )
        (conf / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}\n"
            "mqtt.durable_queue_type = quorum\n"
            "mqtt.allow_anonymous = true\n"
            f"mqtt.prefetch = {self.mqtt_prefetch}\n"
            "loopback_users = none\n"
            "management.disable_stats = true\n"
            "cluster_formation.peer_discovery_backend = classic_config\n"
            f"{peers}\n{self.extra_conf}"
        )
        (conf / "enabled_plugins").write_text("[" + ",".join(PLUGINS) + "].\n")

    def _launch(self, node: Node) -> None:
        self._write_conf(node)
        (node.folder / "log").mkdir(parents=True, exist_ok=True)
        out = open(node.folder / "log" / "stdout.log", "ab")  # noqa: SIM115 (kept by the child)
        node.proc = subprocess.Popen(
            [str(RMQ_BIN / "rabbitmq-server")],
            env=self._env(node),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() ends exactly this node
        )
        out.close()

    def start(self, timeout: float = 120.0) -> RabbitCluster:
        """Start the first node, then the others (they join it through classic_config), and
        wait until every node reports the whole cluster running."""
        deadline = time.monotonic() + timeout
        try:
            self._launch(self.nodes[0])
            self._await(self.nodes[0], deadline)
            for n in self.nodes[1:]:
                self._launch(n)
            for n in self.nodes[1:]:
                self._await(n, deadline)
            while sorted(self.running(self.nodes[0])) != sorted(n.name for n in self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster did not form: {self.running(self.nodes[0])}")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        return self

    def _await(self, node: Node, deadline: float) -> None:
        while True:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited: {self.log_tail(node)}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{node.name} did not start: {self.log_tail(node)}")
            r = self.ctl(node, "await_startup", "--timeout", str(max(1, int(left))), check=False)
            if r.returncode == 0:
                return
            time.sleep(0.5)

    def log_tail(self, node: Node, chars: int = 2000) -> str:
        text = ""
        for f in sorted((node.folder / "log").glob("*.log")):
            text += f"--- {f.name}\n" + f.read_text(errors="replace")[-chars:]
        return text

    def kill(self, node: Node) -> None:
        """kill -9 the node (its process group, which we started)."""
        if node.proc is not None and node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(10)
        node.killed = True

    def restart(self, node: Node, timeout: float = 120.0) -> None:
        """Start a killed node again on its own data folder (what systemd does after a crash)
        and wait until it runs in the cluster."""
        assert node.proc is None or node.proc.poll() is not None, "the node still runs"
        self._launch(node)
        self._await(node, time.monotonic() + timeout)
        node.killed = False

    def stop(self) -> None:
        """Stop every node we started: SIGTERM to its process group, SIGKILL after 15 s."""
        live = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for n in live:
            assert n.proc is not None
            os.killpg(n.proc.pid, signal.SIGTERM)
        for n in live:
            assert n.proc is not None
            try:
                n.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(n.proc.pid, signal.SIGKILL)
                n.proc.wait(10)
        for n in self.nodes:  # a child (epmd is shared, not ours) left in the group
            if n.proc is not None:
                try:
                    os.killpg(n.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # -- inspection ------------------------------------------------------------------------

    def ctl(self, node: Node, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RMQ_BIN / "rabbitmqctl"), "-n", node.name, *args],
            env=self._env(node),
            capture_output=True,
            text=True,
            check=check,
            timeout=90,
        )

    def running(self, node: Node) -> list[str]:
        r = self.ctl(node, "cluster_status", "--formatter", "json", check=False)
        if r.returncode != 0:
            return []
        return [str(n) for n in json.loads(r.stdout).get("running_nodes", [])]

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if not n.killed]

    def queue_leader(self, queue: str) -> Node:
        """The node that leads a quorum queue (asked of a live node)."""
        r = self.ctl(self.alive()[0], "list_queues", "name", "leader", "--formatter", "json")
        for q in json.loads(r.stdout):
            if q["name"] == queue:
                return next(n for n in self.nodes if n.name == q["leader"])
        raise KeyError(queue)
