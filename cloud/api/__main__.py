"""``python -m cloud.api`` (and ``qadam serve``): apply the migrations, then serve the API and
console on settings.http_host:http_port (or the host and port given)."""

from __future__ import annotations

import uvicorn

from cloud.api.app import create_app
from cloud.db.migrate import apply_on_start
from cloud.settings import get_settings


def main(host: str | None = None, port: int | None = None) -> None:
    settings = get_settings()
    apply_on_start(settings.database_url)
    try:
        uvicorn.run(
            create_app(settings), host=host or settings.http_host, port=port or settings.http_port
        )
    except KeyboardInterrupt:
        # uvicorn has shut down gracefully and re-raises the SIGINT it captured; Ctrl-C is the
        # normal way to stop it, so exit 0 without a traceback (as the ingest does).
        pass


if __name__ == "__main__":
    main()
