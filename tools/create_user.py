"""`qadam create-user`: an account from the command line, for the first platform admin (there
is no sign-up) and for recovery when nobody can log in. Everything else goes through the API.

The password is asked twice on a terminal, or read as one line from stdin for scripts; it is
never an argument (arguments end up in shell history and `ps`).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from cloud.auth.principal import ROLES, Principal

MIN_PASSWORD = 10  # as the API's POST /api/v1/users


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("email")
    p.add_argument("--role", default="platform_admin", choices=ROLES)
    p.add_argument("--full-name", default="")
    p.add_argument("--school", help="school id (school_admin, canteen_operator, technician)")
    p.add_argument("--district", type=int, help="district id (district_authority, technician)")
    p.add_argument("--database-url", help="default: QADAM_DATABASE_URL")
    p.set_defaults(func=run)


def _password() -> str | None:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            print("error: the passwords differ", file=sys.stderr)
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    import psycopg

    from cloud.db.conn import connect
    from cloud.db.migrate import apply
    from cloud.domain import store
    from cloud.domain.users import create_user
    from cloud.settings import get_settings

    password = _password()
    if password is None:
        return 2
    if len(password) < MIN_PASSWORD:
        print(f"error: the password needs at least {MIN_PASSWORD} characters", file=sys.stderr)
        return 2
    url = args.database_url or get_settings().database_url
    apply(url)
    actor = Principal(user_id=None, email="cli:create-user", role="platform_admin")
    try:
        with connect(url) as conn:
            uid = create_user(
                conn,
                args.email,
                password,
                args.role,
                full_name=args.full_name,
                district_id=args.district,
                school_id=args.school,
            )
            after = {"id": uid, "email": args.email.lower(), "role": args.role,
                     "school_id": args.school, "district_id": args.district}  # fmt: skip
            store.audit(conn, actor, "create", "user", uid, None, after)
    except psycopg.errors.UniqueViolation:
        print(f"error: a user with e-mail {args.email.lower()} exists", file=sys.stderr)
        return 1
    except psycopg.errors.CheckViolation as exc:
        if exc.diag.constraint_name == "users_scope":
            why = f"{args.role} needs {_scope_hint(args.role)}"
        else:
            why = "the e-mail address or the full name is not valid"
        print(f"error: {why}", file=sys.stderr)
        return 1
    except psycopg.errors.ForeignKeyViolation:
        print("error: no such school or district", file=sys.stderr)
        return 1
    print(f"created user {uid} {args.email.lower()} ({args.role})")
    return 0


def _scope_hint(role: str) -> str:
    return {
        "platform_admin": "no --school and no --district",
        "guardian": "no --school and no --district",
        "district_authority": "--district and no --school",
        "school_admin": "--school and no --district",
        "canteen_operator": "--school and no --district",
        "technician": "exactly one of --school or --district",
    }.get(role, "a valid scope")
