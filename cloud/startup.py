"""Start-up of every process (``qadam serve/ingest/migrate/demo``, ``python -m cloud.*``): one
line on stderr instead of a traceback when the configuration is wrong, and the refusal to start
a production process that would be open (issue #13 items 5 and 15; docs/operations.md).

- :func:`run_entry` wraps an entry point: a :class:`StartupError` (or a
  :class:`cloud.settings.ConfigError`, or a database that cannot be reached) ends the process
  with ``qadam: <what is wrong> (<how to fix it>)`` on stderr and exit code 2 (configuration) or
  3 (a service it needs is unreachable).
- :func:`check_open` lists what a process would leave open (authentication off, a broker that
  lets anonymous clients in, a service account a board could share); :func:`require_closed`
  refuses to start with those unless ``--insecure-dev`` / ``QADAM_INSECURE_DEV=1`` is given, and
  then logs a loud banner naming each one.
"""

from __future__ import annotations

import logging
import secrets
import socket
import sys
from collections.abc import Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import ValidationError

from cloud.settings import ConfigError, Settings, describe_errors, get_settings

log = logging.getLogger("qadam.startup")

EXIT_CONFIG = 2  # a setting is wrong, or the start was refused as insecure
EXIT_UNAVAILABLE = 3  # a service the process needs (PostgreSQL) cannot be reached

INSECURE_FLAG = "--insecure-dev"
INSECURE_ENV = "QADAM_INSECURE_DEV=1"


class StartupError(Exception):
    """A one-line reason why the process cannot start, and its exit code."""

    def __init__(self, message: str, code: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.code = code


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_entry(body: Callable[[], int | None], prog: str = "qadam") -> int:
    """Run ``body`` (an entry point's work); a configuration problem becomes one line on stderr
    and the exit code, never a traceback. Returns the exit code."""
    try:
        return int(body() or 0)
    except StartupError as exc:
        code, msg = exc.code, str(exc)
    except ConfigError as exc:
        code, msg = EXIT_CONFIG, str(exc)
    except ValidationError as exc:  # Settings(...) built with some values given (the demo)
        if exc.title != Settings.__name__:
            raise
        code, msg = EXIT_CONFIG, describe_errors(exc)
    except psycopg.OperationalError as exc:  # lost at start-up, after the first check passed
        code, msg = EXIT_UNAVAILABLE, f"database error at start-up: {_first_line(exc)}"
    print(f"{prog}: {_one_line(msg)}", file=sys.stderr, flush=True)
    return code


def load_settings() -> Settings:
    """The process's settings; a bad value is a :class:`ConfigError` (one line)."""
    return get_settings()


# -- the database ---------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe_database(url: str) -> str:
    """``user@host:port/dbname`` of a connection string, without its password."""
    info = conninfo_to_dict(url)
    host = info.get("host") or "localhost"
    where = f"{host}:{info.get('port') or 5432}/{info.get('dbname') or '?'}"
    return f"{info['user']}@{where}" if info.get("user") else where


def check_database(url: str, timeout_s: int = 5) -> None:
    """Connect once: a malformed QADAM_DATABASE_URL or an unreachable server is a
    :class:`StartupError` with a one-line reason."""
    try:
        where = describe_database(url)
    except psycopg.ProgrammingError as exc:
        raise StartupError(
            f"QADAM_DATABASE_URL: not a PostgreSQL connection string ({_first_line(exc)}); set "
            "postgresql://USER@HOST:PORT/DBNAME"
        ) from None
    try:
        with psycopg.connect(url, connect_timeout=timeout_s, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise StartupError(
            f"database {where} is unreachable ({_first_line(exc)}): check QADAM_DATABASE_URL "
            "and that PostgreSQL is running",
            EXIT_UNAVAILABLE,
        ) from None


# -- what a process would leave open --------------------------------------------------------------
def broker_accepts_anonymous(host: str, port: int, timeout_s: float = 3.0) -> bool | None:
    """Probe the broker: does it accept an MQTT 3.1.1 CONNECT without a username? True/False,
    or None when it cannot be asked (unreachable, not MQTT)."""
    from cloud.mqtt import packets as P

    client_id = f"qadam-probe-{secrets.token_hex(6)}"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(P.connect(client_id, clean_session=True, keepalive=10))
            parser = P.Parser()
            while True:
                data = sock.recv(64)
                if not data:
                    return False  # closed without a CONNACK: refused
                for pkt in parser.feed(data):
                    if isinstance(pkt, P.Connack):
                        if pkt.return_code == 0:
                            sock.sendall(b"\xe0\x00")  # DISCONNECT
                        return pkt.return_code == 0
                    return None
    except (OSError, P.MalformedPacket):
        return None


def check_open(settings: Settings, *, api: bool = False, broker: bool = False) -> list[str]:
    """What a process with ``settings`` would leave open: one short phrase per hole.

    ``api``: the web API (authentication). ``broker``: a process that talks to the MQTT broker
    (its account, and whether the broker lets anonymous clients in)."""
    holes: list[str] = []
    if api and not settings.auth_required:
        holes.append(
            "authentication is off (QADAM_AUTH_REQUIRED=0): anyone who reaches the API reads "
            "every school's events without a token"
        )
    if api and not settings.mqtt_dynsec:
        holes.append(
            "the broker does not enforce the boards' accounts (QADAM_MQTT_DYNSEC=0): credentials "
            "issued at provisioning are not checked"
        )
    if broker:
        from cloud.provisioning.dynsec import is_board_username  # paho: only where needed

        user = settings.mqtt_user
        if user is None:
            holes.append(
                "no broker account (QADAM_MQTT_USER unset): this process connects anonymously"
            )
        elif is_board_username(user):
            holes.append(
                f"the broker account {user!r} (QADAM_MQTT_USER) has a board's name: a "
                "provisioned board could share it"
            )
    if broker or api:
        anonymous = broker_accepts_anonymous(settings.mqtt_host, settings.mqtt_port)
        if anonymous:
            holes.append(
                f"the broker at {settings.mqtt_host}:{settings.mqtt_port} accepts anonymous "
                "clients: anyone on its network can publish taps and acks"
            )
        elif anonymous is None:
            log.warning(
                "could not ask the broker at %s:%d whether it accepts anonymous clients "
                "(unreachable); the process will keep trying to connect",
                settings.mqtt_host, settings.mqtt_port,
            )  # fmt: skip
    return holes


def require_closed(
    settings: Settings,
    *,
    api: bool = False,
    broker: bool = False,
    insecure_dev: bool = False,
    what: str = "qadam",
) -> list[str]:
    """Refuse to start (:class:`StartupError`, exit 2) when :func:`check_open` finds a hole,
    unless ``insecure_dev`` (``--insecure-dev``) or ``settings.insecure_dev``
    (``QADAM_INSECURE_DEV=1``): then log a banner naming every hole. Returns the holes."""
    holes = check_open(settings, api=api, broker=broker)
    if not holes:
        return holes
    if not (insecure_dev or settings.insecure_dev):
        raise StartupError(
            f"refusing to start {what}: " + "; ".join(holes) + f" (fix it, or pass "
            f"{INSECURE_FLAG} / {INSECURE_ENV} for a development machine)"
        )
    insecure_banner(what, holes)
    return holes


def insecure_banner(what: str, holes: list[str]) -> None:
    """The loud warning of a process started open on purpose (``--insecure-dev``, the demo)."""
    bar = "!" * 78
    log.warning(bar)
    log.warning("INSECURE DEVELOPMENT START of %s: never on a network others can reach", what)
    for hole in holes:
        log.warning("OPEN: %s", hole)
    log.warning(bar)


def start_worker(
    what: str,
    body: Callable[[Settings], object],
    argv: list[str] | None = None,
    *,
    broker: bool = False,
) -> int:
    """The ``main`` of a ``python -m cloud.workers.X`` process: ``--insecure-dev`` parsed from
    ``argv`` (default sys.argv), the settings loaded, the start refused if open (``broker``: it
    talks to the MQTT broker), the database checked, then ``body(settings)`` run. Returns the
    exit code; a configuration problem is one line on stderr."""
    import argparse

    p = argparse.ArgumentParser(prog=f"python -m {what}")
    p.add_argument(INSECURE_FLAG, action="store_true", help="start even if open (development)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    def run() -> int:
        from cloud import logs

        # "cloud.workers.whitelist_push" -> "worker.whitelist_push" in every log line
        logs.setup("worker." + what.rsplit(".", 1)[-1])
        settings = load_settings()
        if broker:
            require_closed(settings, broker=True, insecure_dev=args.insecure_dev, what=what)
            from cloud.broker.select import check_board_worker_broker

            # the board workers read the boards' retained statuses through a wildcard: a broker
            # that never delivers them (RabbitMQ 3.10) stops the start loudly (D29-C)
            check_board_worker_broker(settings)
        check_database(settings.database_url)
        from cloud import ops

        endpoints = ops.for_worker(what, settings, broker)
        try:
            body(settings)
        finally:
            if endpoints is not None:
                endpoints.stop()
        return 0

    return run_entry(run)
