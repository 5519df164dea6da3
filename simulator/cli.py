"""`qadam sim`: N virtual boards of a simulated school, tapping on command or by schedule."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from simulator.board import BoardError
from simulator.school import SimulatedSchool

HELP_COMMANDS = """commands:
  tap [N] [BOARD]   N random taps (default 1), on BOARD (device id or index) or round-robin
  stat              journal depth, taps and heap of every board
  summary           taps made, events acked, rows stored
  quit              stop the boards and exit"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="cloud database (default: QADAM_DATABASE_URL)")
    p.add_argument("--mqtt-host", help="broker host (default: QADAM_MQTT_HOST)")
    p.add_argument("--mqtt-port", type=int, help="broker port (default: QADAM_MQTT_PORT)")
    p.add_argument("--prefix", help="topic prefix (default: QADAM_TOPIC_PREFIX)")
    p.add_argument(
        "--school", default="sim-school", help="school id to register (default: %(default)s)"
    )
    p.add_argument("--boards", type=int, default=3, help="number of readers (default: %(default)s)")
    p.add_argument("--students", type=int, default=100, help="pupils on the roster")
    p.add_argument("--staff", type=int, default=10, help="staff on the roster")
    p.add_argument("--taps", type=int, default=0, help="taps to make by schedule, then exit")
    p.add_argument(
        "--rate", type=float, default=0.0, help="taps per second (0: as fast as possible)"
    )
    p.add_argument(
        "--state-dir", type=Path, help="where the boards' flash lives (default: a temp dir)"
    )
    p.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for the acks at the end"
    )
    p.add_argument("--interactive", action="store_true", help="read commands from stdin")
    p.add_argument("--verbose", action="store_true", help="echo every board's output")
    from simulator.scenarios import cli as scenario_cli

    sub = p.add_subparsers(dest="sim_command", metavar="scenario NAME", title="optional subcommand")
    scenario_cli.add_arguments(
        sub.add_parser("scenario", help="run a scenario (morning_rush, power_cut, ...)")
    )
    # The subcommand is optional (without it `qadam sim` runs the boards itself), but argparse
    # writes a subparsers action into the usage as if it were required ("scenario NAME ..."); so
    # the usage is spelled out. Set after add_subparsers, which derives the scenario's prog from it.
    p.usage = (
        "%(prog)s [--boards N] [--taps N] [--rate R] [--interactive] [options]\n"
        "       %(prog)s scenario NAME [options]"
    )


def run(args: argparse.Namespace) -> int:
    from cloud.db.migrate import apply
    from cloud.settings import get_settings

    settings = get_settings()
    database_url = args.database_url or settings.database_url
    apply(database_url)
    echo = (lambda dev, line: print(f"[{dev}] {line}", flush=True)) if args.verbose else None
    school = SimulatedSchool(
        database_url,
        school=args.school,
        students=args.students,
        staff=args.staff,
        boards=args.boards,
        mqtt_host=args.mqtt_host or settings.mqtt_host,
        mqtt_port=args.mqtt_port or settings.mqtt_port,
        prefix=args.prefix or settings.topic_prefix,
        state_dir=args.state_dir,
        echo=echo,
    )
    print(f"starting {len(school.boards)} virtual boards in {school.state_dir}", flush=True)
    try:
        school.start()
        if args.taps:
            school.tap_many(args.taps, rate=args.rate or None, progress=_progress(args.taps))
            print(file=sys.stderr)
            try:
                school.wait_drained(args.wait)
            except BoardError as exc:
                print(f"warning: {exc}", file=sys.stderr)
        if args.interactive:
            _interactive(school)
        summary = school.summary()
        print("\n".join(summary.lines()), flush=True)
        ok = summary.journal_left == 0 and (
            summary.stored is None or summary.stored >= summary.taps
        )
        return 0 if ok else 1
    except KeyboardInterrupt:
        return 130
    finally:
        school.stop()


def _progress(total: int):
    step = max(1, total // 20)

    def show(done: int) -> None:
        if done % step == 0 or done == total:
            print(f"\rtapped {done}/{total}", end="", file=sys.stderr, flush=True)

    return show


def _pick_board(school: SimulatedSchool, name: str):
    if name.isdigit() and int(name) < len(school.boards):
        return school.boards[int(name)]
    for board in school.boards:
        if board.config.device in (name, f"{school.school}-{name}"):
            return board
    raise ValueError(f"no board {name!r}; boards: {[b.config.device for b in school.boards]}")


def _interactive(school: SimulatedSchool) -> None:
    print(HELP_COMMANDS, flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "quit":
                return
            if words[0] == "tap":
                count = int(words[1]) if len(words) > 1 else 1
                boards = [_pick_board(school, words[2])] if len(words) > 2 else school.boards
                before = {b.config.device: len(b.taps) for b in boards}
                school.tap_many(count, boards=boards)
                for board in boards:
                    for tap in board.taps[before[board.config.device] :]:
                        print(f"{board.config.device}: {tap}", flush=True)
            elif words[0] == "stat":
                for board in school.boards:
                    print(f"{board.config.device}: {board.stat()}", flush=True)
            elif words[0] == "summary":
                print("\n".join(school.summary().lines()), flush=True)
            else:
                print(HELP_COMMANDS, flush=True)
        except (ValueError, BoardError) as exc:
            print(f"error: {exc}", flush=True)
        time.sleep(0)
