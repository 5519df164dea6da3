"""``python -m cloud.api`` (and ``qadam serve``): check the settings and that the start is not
open (cloud/startup.py), apply the migrations, then serve the API and console on
settings.http_host:http_port (or the host and port given), in settings.api_workers processes."""

from __future__ import annotations

import argparse
import os
import sys

from cloud import logs
from cloud.startup import INSECURE_FLAG, require_closed, run_entry


def serve(host: str | None = None, port: int | None = None, insecure_dev: bool = False) -> int:
    import uvicorn

    from cloud.api.app import create_app
    from cloud.api.metrics import prepare_multiprocess, remove_multiprocess, serve_metrics
    from cloud.db.migrate import apply_on_start
    from cloud.startup import check_database, load_settings

    logs.setup("api")
    settings = load_settings()
    require_closed(settings, api=True, insecure_dev=insecure_dev, what="qadam serve")
    check_database(settings.database_url)
    apply_on_start(settings.database_url)
    host, port = host or settings.http_host, port or settings.http_port
    if settings.api_nice:
        os.nice(settings.api_nice)  # inherited by every thread and worker started below
    metrics_dir = None
    try:
        if settings.api_workers == 1:
            serve_metrics(settings.api_metrics_host, settings.api_metrics_port, None)
            uvicorn.run(
                create_app(settings), host=host, port=port, log_config=logs.uvicorn_config("api")
            )
        else:
            # Several processes on one socket (issue #19, D27-D): each builds its app from the
            # same QADAM_* environment; this one supervises them and serves their metrics.
            if settings.api_metrics_port:
                metrics_dir = prepare_multiprocess()
            serve_metrics(settings.api_metrics_host, settings.api_metrics_port, metrics_dir)
            uvicorn.run(
                "cloud.api.app:create_app", factory=True, workers=settings.api_workers,
                host=host, port=port, log_config=logs.uvicorn_config("api"),
            )  # fmt: skip
    except KeyboardInterrupt:
        # uvicorn has shut down gracefully and re-raises the SIGINT it captured; Ctrl-C is the
        # normal way to stop it, so exit 0 without a traceback (as the ingest does).
        pass
    finally:
        if metrics_dir is not None:
            remove_multiprocess(metrics_dir)
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
