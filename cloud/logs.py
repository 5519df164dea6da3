"""One log format for every cloud process (issue #18): JSON lines on stderr with the same keys
everywhere — ts (UTC, ms), level, process, logger, msg — plus a record's structured fields
(``log.info("...", extra={"fields": {...}})``) and the exception text if any. A log shipper
(journald, Loki, Elasticsearch) reads them without a parser per process."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

# the process's name in every line: "api", "ingest", "worker.whitelist", ... (set by setup)
_process = "qadam"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "process": _process,
            "logger": record.name,
            "msg": getattr(record, "event", None) or record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                out.setdefault(k, v if isinstance(v, int | float | bool | None) else str(v))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def setup(process: str, level: int = logging.INFO) -> None:
    """Send every logger of this process to stderr as JSON lines named ``process``."""
    global _process
    _process = process
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def uvicorn_config(process: str) -> dict[str, Any]:
    """uvicorn's ``log_config``: applied again in each worker process it spawns, so the API's
    processes (and uvicorn's own error and access lines) log as the others do."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "cloud.logs.named_formatter", "process": process}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            name: {"handlers": [], "level": "INFO", "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def named_formatter(process: str) -> JsonFormatter:
    """dictConfig's factory: sets the process name in a freshly spawned process."""
    global _process
    _process = process
    return JsonFormatter()
