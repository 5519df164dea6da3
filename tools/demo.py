"""`qadam demo`: a simulated school against the real cloud, on embedded services if none run.

Starts (only what is missing) PostgreSQL and an MQTT broker, then the ingest, the web API and a
school with an entrance turnstile in, one out and a canteen reader whose pupils arrive, eat and
leave. Ctrl-C stops everything it started, and nothing else.
"""

from __future__ import annotations

import argparse
import random
import socket
import threading
import time
from pathlib import Path

from cloud.settings import Settings
from tools.services import Services, ensure_database, running_services

REPO = Path(__file__).resolve().parent.parent


DEMO_ADMIN = "admin@demo-school.local"


def demo_admin(database_url: str, school: str) -> str:
    """The demo school's administrator for the console, with a new random password each run
    (printed once): the console's pages are behind sign-in even in the open demo (D27-E)."""
    import secrets

    import psycopg

    from cloud.auth.passwords import hash_password

    password = secrets.token_urlsafe(9)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO users (email, password_hash, role, school_id)"
            " VALUES (%s, %s, 'school_admin', %s)"
            " ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash",
            (DEMO_ADMIN, hash_password(password), school),
        )
    return password


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir", type=Path, default=REPO / "var", help="data of embedded services and boards"
    )
    p.add_argument("--http-port", type=int, default=8000, help="web port (next free one if taken)")
    p.add_argument(
        "--pg-port", type=int, default=5432, help="PostgreSQL port to use, or to start it on"
    )
    p.add_argument(
        "--mqtt-port", type=int, default=1883, help="MQTT port to use, or to start a broker on"
    )
    p.add_argument("--students", type=int, default=120)
    p.add_argument("--staff", type=int, default=12)
    p.add_argument("--rate", type=float, default=2.0, help="taps per second")
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)"
    )


def free_port(preferred: int) -> int:
    for port in [preferred, *range(preferred + 1, preferred + 50)]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port near {preferred}")


class Day:
    """Pupils arrive through the entrance, some eat in the canteen, then leave."""

    def __init__(self, school, seed: int = 7) -> None:
        self.school = school
        self.rng = random.Random(seed)
        self.inside: set[int] = set()
        self.fed: set[int] = set()
        self.board = {b.config.reader: b for b in school.boards}

    def step(self) -> None:
        people = self.school.people
        i = self.rng.randrange(len(people))
        if self.rng.random() < 0.01:
            self.board["in"].tap(self.rng.choice(self.school.strangers))
            return
        if i not in self.inside:
            self.board["in"].tap(people[i].uid)
            self.inside.add(i)
        elif i not in self.fed and "canteen" in self.board and self.rng.random() < 0.6:
            self.board["canteen"].tap(people[i].uid)
            self.fed.add(i)
        else:
            self.board["out"].tap(people[i].uid)
            self.inside.discard(i)
            self.fed.discard(i)


def _say_open(settings: Settings) -> None:
    """Print what the demo leaves open (the same checks that make `qadam serve` and
    `qadam ingest` refuse to start without --insecure-dev), and log the banner."""
    from cloud.startup import check_open, insecure_banner

    holes = check_open(settings, api=True, broker=True)
    print("\n" + "!" * 78, flush=True)
    print("DEMO MODE: INSECURE, for this machine only. Open:", flush=True)
    for hole in holes:
        print(f"  - {hole}", flush=True)
    print("A production start (`qadam serve`, `qadam ingest`) refuses all of this.", flush=True)
    print("!" * 78 + "\n", flush=True)
    insecure_banner("qadam demo", holes)


def run(args: argparse.Namespace) -> int:
    from cloud.startup import load_settings

    load_settings()  # a bad QADAM_* variable: one line and exit 2 before anything starts
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with running_services(state, pg_port=args.pg_port, mqtt_port=args.mqtt_port) as services:
        return _run(args, services, state)


def _run(args: argparse.Namespace, services: Services, state: Path) -> int:
    # imported here: `qadam flash` and the other subcommands build their parser from this
    # module and need none of the web, ingest or simulator code
    import uvicorn

    from cloud.api.app import create_app
    from cloud.db.migrate import apply
    from cloud.ingest.service import Ingest
    from simulator.school import SimulatedSchool

    started: list = []
    try:
        ensure_database(services.pg_admin_url, "qadam_demo")
        database_url = services.db_url("qadam_demo")
        print("applying migrations ...", flush=True)
        apply(database_url)
        http_port = free_port(args.http_port)
        settings = Settings(
            database_url=database_url,
            mqtt_host=services.mqtt_host,
            mqtt_port=services.mqtt_port,
            topic_prefix="qadam-demo",
            ingest_client_id="qadam-demo-ingest",
            http_port=http_port,
            # The demo is open on purpose: the live page reads the events without a token and
            # the boards use the broker without accounts. Said loudly (cloud/startup.py).
            auth_required=False,
            insecure_dev=True,
        )
        _say_open(settings)
        ingest = Ingest(settings)
        ingest.start()
        started.append(ingest.stop)

        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings), host="127.0.0.1", port=http_port, log_level="warning"
            )
        )
        web = threading.Thread(target=server.run, name="web", daemon=True)
        web.start()

        def stop_web() -> None:
            server.should_exit = True
            web.join(10)

        started.append(stop_web)

        school = SimulatedSchool(
            database_url,
            school="demo-school",
            students=args.students,
            staff=args.staff,
            boards=3,
            mqtt_host=services.mqtt_host,
            mqtt_port=services.mqtt_port,
            prefix=settings.topic_prefix,
            state_dir=state / "boards",
        )
        print(f"starting {len(school.boards)} virtual boards (MicroPython VM) ...", flush=True)
        school.start()
        started.append(school.stop)
        while not server.started:
            time.sleep(0.05)
        password = demo_admin(database_url, "demo-school")
        print(f"\nOpen http://127.0.0.1:{http_port}/live  (API: /api/v1/events, /docs)", flush=True)
        print(f"Sign in as {DEMO_ADMIN} with {password}  (a new password each run)", flush=True)
        print("Ctrl-C stops the demo.\n", flush=True)

        day = Day(school)
        t0 = time.monotonic()
        shown = 0.0
        while not args.duration or time.monotonic() - t0 < args.duration:
            day.step()
            time.sleep(1.0 / args.rate if args.rate > 0 else 0)
            if time.monotonic() - shown > 10:
                shown = time.monotonic()
                s = school.summary()
                print(
                    f"taps {s.taps}  acked {s.acked}  stored {s.stored}  inside {len(day.inside)}",
                    flush=True,
                )
        school.wait_drained(30)
        print("\n".join(school.summary().lines()))
        return 0
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        for stop in reversed(started):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"while stopping: {exc}")
