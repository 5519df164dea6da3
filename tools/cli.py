"""The `qadam` console script: one entry point with a subcommand per job."""

from __future__ import annotations

import argparse
import sys


def _serve(args: argparse.Namespace) -> int:
    from cloud.api.__main__ import main

    # checks the settings and refuses an open start, then applies the migrations first, as
    # `python -m cloud.api` does (cloud/startup.py)
    return main(args.host, args.port, args.insecure_dev)


def _ingest(args: argparse.Namespace) -> int:
    from cloud.ingest.__main__ import main

    return main(args.insecure_dev)  # as `python -m cloud.ingest` does


# `qadam worker NAME` -> the module whose main(argv) runs it (cloud/startup.py start_worker)
WORKERS = {
    "whitelist": "cloud.workers.whitelist_push",
    "balance": "cloud.workers.balance_push",
    "outbox": "cloud.workers.outbox",
    "reports": "cloud.workers.reports",
    "commands": "cloud.workers.command_push",
    "ota": "cloud.workers.ota_push",
    "retention": "cloud.workers.retention",  # D29-B
    "ejournal": "cloud.integrations.ejournal.daily",  # D29-I
}


def _worker(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(WORKERS[args.name])
    return int(module.main(["--insecure-dev"] if args.insecure_dev else []))


def _run_all(args: argparse.Namespace) -> int:
    from cloud.supervisor import PROCESSES, main

    names = [n.strip() for n in args.only.split(",")] if args.only else None
    unknown = [n for n in names or [] if n not in PROCESSES]
    if unknown:
        print(f"qadam: unknown process {', '.join(unknown)} (one of: {', '.join(PROCESSES)})",
              file=sys.stderr)  # fmt: skip
        return 2
    return main(names, args.insecure_dev)


def _broker_accounts(args: argparse.Namespace) -> int:
    """Make the cloud's own broker accounts (cloud/provisioning/service_accounts.py) and write
    each process's credentials for its unit."""
    from pathlib import Path

    from cloud.provisioning.dynsec import DynSec
    from cloud.provisioning.service_accounts import setup
    from cloud.startup import load_settings

    s = load_settings()
    if not s.mqtt_admin_user:
        print("qadam: QADAM_MQTT_ADMIN_USER is not set (the broker's dynamic-security admin)",
              file=sys.stderr)  # fmt: skip
        return 2
    dynsec = DynSec(s.mqtt_host, s.mqtt_port, s.mqtt_admin_user, s.mqtt_admin_password,
                    s.topic_prefix)  # fmt: skip
    for process, path in setup(dynsec, Path(args.out_dir)).items():
        print(f"{process}: {path}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from cloud.db.migrate import apply
    from cloud.startup import check_database, load_settings

    url = args.database_url or load_settings().database_url
    check_database(url)
    applied = apply(url)
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _push_key(args: argparse.Namespace) -> int:
    """Create the platform's VAPID key once (mode 0600) and print its public half; an existing
    file is only read, never replaced: replacing it would orphan every browser subscription."""
    import os
    from pathlib import Path

    from cloud.push.webpush import VapidKey

    path = Path(args.file)
    existing = path.exists()
    pem = path.read_bytes() if existing else VapidKey.generate_pem()
    try:
        key = VapidKey(pem, "mailto:unused@example.org")
    except ValueError:
        print(f"error: {path} is not a P-256 private key in PEM", file=sys.stderr)
        return 2
    if existing:
        print(f"{path}: existing key kept")
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        print(f"{path}: new VAPID key written")
    print(f"applicationServerKey: {key.application_server_key}")
    print(f"QADAM_PUSH_VAPID_KEY_FILE={path.resolve()}")
    return 0


def _insecure_dev(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--insecure-dev",
        action="store_true",
        help="start even with authentication off, an anonymous broker or a board-shaped broker "
        "account (a loud banner names what is open; development only). Also QADAM_INSECURE_DEV=1",
    )


def build_parser() -> argparse.ArgumentParser:
    from simulator import cli as sim_cli
    from tools import demo

    parser = argparse.ArgumentParser(prog="qadam", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="run a simulated school against the cloud (starts what is missing)"
    )
    demo.add_arguments(p)
    p.set_defaults(func=demo.run)

    p = sub.add_parser("serve", help="run the web API and console")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    _insecure_dev(p)
    p.set_defaults(func=_serve)

    p = sub.add_parser("ingest", help="run the MQTT ingest worker")
    _insecure_dev(p)
    p.set_defaults(func=_ingest)

    p = sub.add_parser("worker", help="run one background worker")
    p.add_argument("name", choices=sorted(WORKERS))
    _insecure_dev(p)
    p.set_defaults(func=_worker)

    from cloud.supervisor import PROCESSES

    p = sub.add_parser(
        "run-all", help="run the API, the ingest and every worker, restarting any that dies"
    )
    p.add_argument("--only", help="comma-separated subset of: " + ",".join(PROCESSES))
    _insecure_dev(p)
    p.set_defaults(func=_run_all)

    p = sub.add_parser(
        "broker-accounts",
        help="(re)make the cloud's own broker accounts and write broker-<process>.env files",
    )
    p.add_argument("--out-dir", default="/etc/qadam", help="where the env files go (0600)")
    p.set_defaults(func=_broker_accounts)

    p = sub.add_parser("backup", help="database backups: base, check, restore (docs/deploy.md)")
    from cloud.backup import cli as backup_cli

    backup_cli.add_arguments(p)
    p.set_defaults(func=backup_cli.run)

    p = sub.add_parser(
        "retention", help="archive and drop old months of events now; --dry-run; restore YYYY-MM"
    )
    from cloud.retention import cli as retention_cli

    retention_cli.add_arguments(p)

    p = sub.add_parser("ejournal", help="e-journal: connect a school, queue a day (D29-I)")
    from cloud.integrations.ejournal import cli as ejournal_cli

    ejournal_cli.add_arguments(p)

    p = sub.add_parser("platform-client", help="the read API's machine clients (D29-I)")
    from cloud.integrations.platform import cli as platform_cli

    platform_cli.add_arguments(p)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("--database-url")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("sim", help="run virtual boards for a simulated school")
    sim_cli.add_arguments(p)
    p.set_defaults(func=sim_cli.run)

    from tools import flash

    p = sub.add_parser(
        "flash",
        help="technician tool: build and flash firmware to a board",
        description=flash.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flash.add_arguments(p)  # the same options as `python tools/flash.py` (flash.build_parser)
    p.set_defaults(func=flash.run)

    p = sub.add_parser(
        "validate-board", help="check board.json files (board-configs/) against the schema and pins"
    )
    from tools import boardconfig

    boardconfig.add_arguments(p)
    p.set_defaults(func=boardconfig.run)

    p = sub.add_parser("create-user", help="create an account (the first platform admin)")
    from tools import create_user

    create_user.add_arguments(p)

    p = sub.add_parser("push-key", help="create (once) and show the Web Push VAPID key")
    p.add_argument("file", help="PEM file of the key; created with mode 0600 if missing")
    p.set_defaults(func=_push_key)

    p = sub.add_parser("release", help="OTA: make a release key, build, sign, publish a release")
    from tools import release

    release.add_arguments(p)

    p = sub.add_parser("diag", help="a board's state: cloud view (DEVICE) or bench (--serial PORT)")
    from tools import diag

    diag.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cloud.startup import run_entry

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["flash"]:  # `--claim -TOKEN`: a token, not an option (tools/flash.py)
        from tools import flash

        argv = ["flash", *flash.claim_argv(argv[1:], flash.option_strings(flash.build_parser()))]
    args = build_parser().parse_args(argv)
    # bad settings, an unreachable database, a refused open start: one line, exit 2 or 3
    return run_entry(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
