"""``qadam platform-client``: a platform admin registers a platform's machine client for the
read API (its secret is printed once) or disables one (its tokens stop at once)."""

from __future__ import annotations

import argparse
import sys

from cloud.integrations.platform.clients import SCOPES


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="platform_command", required=True)
    c = sub.add_parser("create", help="register a client; prints its id and secret once")
    c.add_argument("--name", required=True)
    c.add_argument("--school", action="append", required=True, help="repeat for more schools")
    c.add_argument("--scope", action="append", required=True, choices=SCOPES)
    d = sub.add_parser("disable", help="disable a client and end its tokens")
    d.add_argument("--client-id", required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cloud.db.conn import connect
    from cloud.domain.errors import Invalid, NotFound
    from cloud.integrations.platform import clients
    from cloud.startup import check_database, load_settings

    settings = load_settings()
    check_database(settings.database_url)
    try:
        with connect(settings.database_url, application_name="qadam-platform-client") as conn:
            if args.platform_command == "disable":
                clients.disable(conn, args.client_id)
                print(f"{args.client_id}: disabled")
                return 0
            cid, secret = clients.create(conn, args.name, args.school, args.scope)
    except (Invalid, NotFound) as e:
        print(f"qadam platform-client: {e}", file=sys.stderr)
        return 1
    print(f"client_id: {cid}\nclient_secret: {secret}\n(the secret is shown only now)")
    return 0
