"""A PostgreSQL 15 cluster of the test's own: initdb into a temporary directory, its own port and
socket directory, started and stopped with pg_ctl. The machine's cluster is left alone. As root
(our CI) the server runs as the ``postgres`` system user, which PostgreSQL requires."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psycopg

PG_BIN = Path("/usr/lib/postgresql/15/bin")
AS_ROOT = os.geteuid() == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def give_to_server_user(path: Path) -> None:
    """Let the server's user own ``path`` (recursively) when we are root."""
    if AS_ROOT:
        shutil.chown(path, "postgres", "postgres")
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                shutil.chown(os.path.join(dirpath, name), "postgres", "postgres")


def as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if AS_ROOT else argv


class OwnCluster:
    def __init__(self, data: Path, port: int | None = None) -> None:
        self.data = data
        self.port = port or free_port()
        self.log = data.parent / f"{data.name}.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def initdb(self, settings: str, wal_segsize_mb: int = 1) -> None:
        self.data.mkdir(mode=0o700)
        give_to_server_user(self.data)
        r = subprocess.run(
            as_server_user(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    f"--wal-segsize={wal_segsize_mb}",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        self.configure(settings)

    def configure(self, settings: str) -> None:
        """Append settings (postgresql.auto.conf: they win over postgresql.conf); the port and
        socket directory always are this cluster's."""
        with open(self.data / "postgresql.auto.conf", "a") as f:
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.data.parent}'\n{settings}\n"
            )

    def start(self, timeout: int = 30) -> subprocess.CompletedProcess[str]:
        # the log file is created by pg_ctl as the server user (in a directory it owns)
        return subprocess.run(
            as_server_user(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    str(timeout),
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                as_server_user(
                    [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
                ),
                capture_output=True,
                timeout=30,
            )

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_replayed(self, timeout: float = 30) -> bool:
        """After a start in recovery: True once the server has replayed to its target and
        accepts writes, False if it stopped instead. (pg_ctl -w returns as soon as recovery
        begins, whether or not it will reach its end.)"""
        deadline = time.monotonic() + timeout
        while True:
            if not (self.data / "postmaster.pid").exists():
                return False
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row is not None and not row[0]:
                        return True
            except psycopg.OperationalError:
                pass  # not accepting connections while it replays (hot_standby = off)
            assert time.monotonic() < deadline, "still replaying:\n" + self.log_text()[-2000:]
            time.sleep(0.1)
