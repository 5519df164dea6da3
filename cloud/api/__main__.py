"""``python -m cloud.api``: serve the API and console on settings.http_host:http_port."""

from __future__ import annotations

import uvicorn

from cloud.api.app import create_app
from cloud.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
