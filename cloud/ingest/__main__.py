"""``python -m cloud.ingest`` (and ``qadam ingest``): check the settings and that the start is not
open (cloud/startup.py: the broker account and whether the broker lets anonymous clients in),
apply the migrations, then run the ingest service until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import sys

from cloud import logs
from cloud.startup import INSECURE_FLAG, require_closed, run_entry


def ingest(insecure_dev: bool = False) -> int:
    from cloud.broker.select import make_ingest
    from cloud.db.migrate import apply_on_start
    from cloud.startup import check_database, load_settings

    logs.setup("ingest")
    settings = load_settings()
    require_closed(settings, broker=True, insecure_dev=insecure_dev, what="qadam ingest")
    check_database(settings.database_url)
    apply_on_start(settings.database_url)
    make_ingest(settings).run_forever()  # Mosquitto or a RabbitMQ cluster (D29-C)
    return 0


def main(insecure_dev: bool = False) -> int:
    """Run the ingest; a configuration problem is one line on stderr and the exit code."""
    return run_entry(lambda: ingest(insecure_dev))


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m cloud.ingest", description=__doc__)
    p.add_argument(INSECURE_FLAG, action="store_true", help="start even if open (development)")
    sys.exit(main(p.parse_args().insecure_dev))
