"""``python -m cloud.ingest`` (and ``qadam ingest``): apply the migrations, then run the ingest
service until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

from cloud.db.migrate import apply_on_start
from cloud.ingest.metrics import setup_json_logging
from cloud.ingest.service import Ingest
from cloud.settings import get_settings


def main() -> None:
    setup_json_logging(logging.INFO)
    settings = get_settings()
    apply_on_start(settings.database_url)
    Ingest(settings).run_forever()


if __name__ == "__main__":
    main()
