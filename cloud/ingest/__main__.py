"""``python -m cloud.ingest``: run the ingest service until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

from cloud.ingest.service import Ingest
from cloud.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    Ingest(get_settings()).run_forever()


if __name__ == "__main__":
    main()
