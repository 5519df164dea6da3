"""`qadam sim scenario NAME [...]`: run one scenario, print its summary, exit 1 on a violation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator.scenarios import NAMES, get


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=NAMES, help="which scenario")
    p.add_argument("--database-url", help="cloud database (default: QADAM_DATABASE_URL)")
    p.add_argument("--mqtt-host", help="broker host (default: QADAM_MQTT_HOST)")
    p.add_argument("--mqtt-port", type=int, help="broker port (default: QADAM_MQTT_PORT)")
    p.add_argument("--prefix", help="topic prefix (default: QADAM_TOPIC_PREFIX)")
    p.add_argument("--school", help="school id to register (default: a fresh one per run)")
    p.add_argument("--students", type=int, help="pupils on the roster (scenario default)")
    p.add_argument("--staff", type=int, help="staff on the roster")
    p.add_argument("--boards", type=int, help="number of readers")
    p.add_argument("--minutes", type=float, help="simulated length of the busy period")
    p.add_argument("--speed", type=float, help="simulated seconds per real second (default 60)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--outage", type=float, help="network_outage: simulated minutes offline")
    p.add_argument("--cut-boards", type=int, help="network_outage: how many boards go offline")
    p.add_argument("--cuts", type=int, help="power_cut: how many power cuts")
    p.add_argument("--state-dir", type=Path, help="the boards' flash (default: a temp dir)")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the acks")
    p.add_argument(
        "--no-ingest",
        action="store_true",
        help="do not run an in-process ingest (a `qadam ingest` must be running)",
    )
    p.add_argument("--verbose", action="store_true", help="echo every board's output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cloud.db.migrate import apply
    from cloud.settings import get_settings
    from simulator.scenarios.base import Context

    settings = get_settings()
    database_url = args.database_url or settings.database_url
    apply(database_url)
    ctx = Context(
        database_url=database_url,
        mqtt_host=args.mqtt_host or settings.mqtt_host,
        mqtt_port=args.mqtt_port or settings.mqtt_port,
        prefix=args.prefix or settings.topic_prefix,
        school=args.school,
        students=args.students,
        staff=args.staff,
        boards=args.boards,
        minutes=args.minutes,
        speed=args.speed,
        seed=args.seed,
        state_dir=args.state_dir,
        wait=args.wait,
        ingest=not args.no_ingest,
        options={"outage": args.outage, "cut_boards": args.cut_boards, "cuts": args.cuts},
        echo=(lambda dev, line: print(f"[{dev}] {line}", flush=True)) if args.verbose else None,
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    try:
        summary = get(args.name).run(ctx)
    except KeyboardInterrupt:
        return 130
    print("\n".join(summary.lines()), flush=True)
    return 0 if summary.ok else 1
