"""A pg_auto_failover formation the failover test starts itself (D29-D): a monitor and two data
nodes on free loopback ports under a temporary folder (the machine's PostgreSQL on 5432 is left
alone). Each is created by the deployment's own script, deploy/failover/pgaf-create.sh (so its
failover timing, monitor.conf and keeper.settings, is the one tested), and run with `pg_autoctl
run` as its systemd unit would, in its own process group: killing the group is a machine dying
(keeper, postmaster and backends at once; killing only the postmaster is a crash the keeper
restarts, not a failover).

PostgreSQL refuses to run as root, so as root everything runs as the postgres user."""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
CREATE = REPO / "deploy" / "failover" / "pgaf-create.sh"
PG_AUTOCTL = "/usr/bin/pg_autoctl"
DBNAME = "qadam"
# states in which a node takes writes (wait_primary: a primary without a standby yet)
WRITABLE = ("single", "wait_primary", "primary")


def pg_ctl() -> Path | None:
    """pg_ctl of the PostgreSQL version the pgautofailover extension is built for."""
    for so in sorted(glob.glob("/usr/lib/postgresql/*/lib/pgautofailover.so"), reverse=True):
        candidate = Path(so).parents[1] / "bin" / "pg_ctl"
        if candidate.exists():
            return candidate
    return None


def available() -> bool:
    return Path(PG_AUTOCTL).exists() and pg_ctl() is not None


needs_pg_auto_failover = pytest.mark.skipif(
    not available(),
    reason="the Debian packages pg-auto-failover-cli and postgresql-15-auto-failover are not"
    " installed",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@dataclass
class Member:
    name: str
    role: str  # monitor or node
    port: int
    pgdata: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)


class Formation:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.as_root = os.geteuid() == 0
        self.user = "postgres" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.monitor = Member("monitor", "monitor", _free_port(), work / "monitor")
        self.nodes = [
            Member(f"node{i}", "node", _free_port(), work / f"node{i}") for i in (1, 2)
        ]  # fmt: skip
        self.env = dict(
            os.environ,
            HOME=str(work),
            XDG_CONFIG_HOME=str(work / "config"),
            XDG_DATA_HOME=str(work / "data"),
            XDG_RUNTIME_DIR=str(work / "run"),
        )
        self.env.pop("PGDATA", None)

    # -- addresses -------------------------------------------------------------------------

    def url(self, attrs: str = "read-write") -> str:
        """The application's libpq URL naming both nodes, as in QADAM_DATABASE_URL."""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"postgresql://{self.user}@{hosts}/{DBNAME}?target_session_attrs={attrs}"

    def node_url(self, node: Member, dbname: str = DBNAME) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{node.port}/{dbname}"

    def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported state, assigned state), as the monitor knows them."""
        url = self.node_url(self.monitor, "pg_auto_failover")
        with psycopg.connect(url, connect_timeout=3) as conn:
            rows = conn.execute(
                "SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node"
            ).fetchall()
        return {str(n): (str(r), str(g)) for n, r, g in rows}

    def writable(self) -> Member | None:
        """The node the monitor has as primary (reported and assigned), if any."""
        try:
            states = self.states()
        except psycopg.OperationalError:
            return None
        for n in self.nodes:
            reported, goal = states.get(n.name, ("", ""))
            if reported in WRITABLE and goal == reported:
                return n
        return None

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> Formation:
        for sub in ("config", "data", "run"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        if self.as_root:
            uid, gid = pwd.getpwnam(self.user).pw_uid, grp.getgrnam(self.user).gr_gid
            for path in [self.work, *self.work.iterdir()]:
                os.chown(path, uid, gid)
        self._create(self.monitor)
        self._run(self.monitor)
        wait_for(self._monitor_up, 30, "the monitor to accept connections")
        first, second = self.nodes
        self._create(first)
        self._run(first)
        wait_for(lambda: self.writable() is first, 60, "the first node to be primary")
        # The standby's pg_basebackup waits for a checkpoint, which PostgreSQL spreads over
        # minutes unless asked for one: ask while the copy runs.
        creating = self._create(second, wait=False)
        deadline = time.monotonic() + 120
        while creating.poll() is None:
            assert time.monotonic() < deadline, "the standby's copy did not finish"
            self._checkpoint(first)
            time.sleep(0.5)
        assert creating.returncode == 0, self._log(second, "create")
        self._run(second)

        def replicating() -> bool:
            states = self.states()
            return states.get(first.name) == ("primary", "primary") and states.get(second.name) == (
                "secondary",
                "secondary",
            )

        wait_for(replicating, 90, "primary and streaming standby")
        return self

    def kill(self, member: Member) -> None:
        """SIGKILL the member's whole process group (keeper, postmaster, backends)."""
        assert member.proc is not None
        os.killpg(member.proc.pid, signal.SIGKILL)
        member.proc.wait(10)

    def freeze(self, member: Member) -> None:
        """SIGSTOP the member's process group: a hung machine, whose kernel still holds its
        connections open. ``kill`` ends it."""
        assert member.proc is not None
        os.killpg(member.proc.pid, signal.SIGSTOP)

    def stop(self) -> None:
        members = [*self.nodes, self.monitor]
        for m in members:
            if m.proc is not None and m.proc.poll() is None:
                os.killpg(m.proc.pid, signal.SIGTERM)  # pg_autoctl stops its PostgreSQL
                os.killpg(m.proc.pid, signal.SIGCONT)  # a frozen one too
        for m in members:
            if m.proc is None:
                continue
            try:
                m.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(m.proc.pid, signal.SIGKILL)
                m.proc.wait(10)
        for m in members:  # a postmaster left behind by a killed keeper
            pid_file = m.pgdata / "postmaster.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (OSError, ValueError, IndexError):
                    pass

    def remove(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------

    def _log(self, member: Member, what: str) -> str:
        path = self.work / f"{member.name}.{what}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def _env_file(self, member: Member) -> Path:
        monitor = (
            f"postgres://autoctl_node@127.0.0.1:{self.monitor.port}/pg_auto_failover"
            "?sslmode=disable"
        )
        path = self.work / f"{member.name}.env"
        # loopback only, so trust and no TLS; a deployment uses scram-sha-256 and TLS
        path.write_text(
            f"PGAF_ROLE={member.role}\nPGDATA={member.pgdata}\nPGPORT={member.port}\n"
            f"PGAF_PGCTL={pg_ctl()}\nPGAF_HOSTNAME=127.0.0.1\nPGAF_NAME={member.name}\n"
            f'PGAF_MONITOR="{monitor}"\nPGAF_DBNAME={DBNAME}\nPGAF_AUTH=trust\n'
            f'PGAF_SSL="--no-ssl"\nPGAF_USER={self.user}\n'
        )
        return path

    def _create(self, member: Member, wait: bool = True) -> subprocess.Popen[bytes]:
        log = (self.work / f"{member.name}.create.log").open("ab")
        proc = subprocess.Popen(
            ["sh", str(CREATE), str(self._env_file(member))], env=self.env, cwd=self.work,
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        if wait:
            assert proc.wait(120) == 0, self._log(member, "create")
        return proc

    def _run(self, member: Member) -> None:
        log = (self.work / f"{member.name}.run.log").open("ab")
        extra: dict[str, object] = {}
        if self.as_root:
            extra = {"user": self.user, "group": self.user, "extra_groups": []}
        member.proc = subprocess.Popen(
            [PG_AUTOCTL, "run", "--pgdata", str(member.pgdata)],
            env=self.env, cwd=self.work, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, **extra,  # type: ignore[call-overload]
        )  # fmt: skip
        log.close()

    def _monitor_up(self) -> bool:
        assert self.monitor.proc is not None and self.monitor.proc.poll() is None, self._log(
            self.monitor, "run"
        )
        try:
            self.states()
            return True
        except psycopg.OperationalError:
            return False

    def _checkpoint(self, node: Member) -> None:
        try:
            with psycopg.connect(self.node_url(node), autocommit=True, connect_timeout=2) as c:
                c.execute("CHECKPOINT")
        except psycopg.Error:
            pass
