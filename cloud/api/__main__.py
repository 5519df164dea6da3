"""``python -m cloud.api`` (and ``qadam serve``): check the settings and that the start is not
open (cloud/startup.py), apply the migrations, then serve the API and console on
settings.http_host:http_port (or the host and port given)."""

from __future__ import annotations

import argparse
import sys

from cloud.startup import INSECURE_FLAG, require_closed, run_entry


def serve(host: str | None = None, port: int | None = None, insecure_dev: bool = False) -> int:
    import uvicorn

    from cloud.api.app import create_app
    from cloud.db.migrate import apply_on_start
    from cloud.startup import check_database, load_settings

    settings = load_settings()
    require_closed(settings, api=True, insecure_dev=insecure_dev, what="qadam serve")
    check_database(settings.database_url)
    apply_on_start(settings.database_url)
    try:
        uvicorn.run(
            create_app(settings), host=host or settings.http_host, port=port or settings.http_port
        )
    except KeyboardInterrupt:
        # uvicorn has shut down gracefully and re-raises the SIGINT it captured; Ctrl-C is the
        # normal way to stop it, so exit 0 without a traceback (as the ingest does).
        pass
    return 0


def main(host: str | None = None, port: int | None = None, insecure_dev: bool = False) -> int:
    """Serve; a configuration problem is one line on stderr and the exit code (2 or 3)."""
    return run_entry(lambda: serve(host, port, insecure_dev))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cloud.api", description=__doc__)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(INSECURE_FLAG, action="store_true", help="start even if open (development)")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = _parse(sys.argv[1:])
    sys.exit(main(args.host, args.port, args.insecure_dev))
