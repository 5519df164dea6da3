"""``python -m cloud.ingest``: run the ingest service until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

from cloud.ingest.metrics import setup_json_logging
from cloud.ingest.service import Ingest
from cloud.settings import get_settings


def main() -> None:
    setup_json_logging(logging.INFO)
    Ingest(get_settings()).run_forever()


if __name__ == "__main__":
    main()
