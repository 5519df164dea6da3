"""``qadam run-all``: every cloud process of a one-machine installation under one parent (issue
#18): the API, the ingest and each worker as child processes, restarted with backoff when they
die, stopped together on SIGTERM/SIGINT. A unit manager (systemd) then supervises one process;
the children keep their own process names in the JSON log lines (cloud/logs.py).

A child that fails its first start with a configuration or database error (exit 2 or 3,
cloud/startup.py) stops the whole set with that code: restarting would not fix the settings,
and a set that looks up but misses a worker is worse than one that refuses to start."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("qadam.supervisor")

# name -> the `qadam` arguments that run it
PROCESSES: dict[str, list[str]] = {
    "api": ["serve"],
    "ingest": ["ingest"],
    "worker.whitelist": ["worker", "whitelist"],
    "worker.balance": ["worker", "balance"],
    "worker.outbox": ["worker", "outbox"],
    "worker.reports": ["worker", "reports"],
    "worker.commands": ["worker", "commands"],
    "worker.ota": ["worker", "ota"],
    "worker.retention": ["worker", "retention"],
    "worker.ejournal": ["worker", "ejournal"],
}
FATAL_AT_START = (2, 3)  # cloud/startup.py EXIT_CONFIG, EXIT_DATABASE
STEADY_S = 60.0  # a child that ran this long starts its backoff again from the bottom


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 0.0
    due_at: float = 0.0  # when a dead child is started again
    ever_ran_steady: bool = field(default=False)


class Supervisor:
    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        *,
        backoff_first_s: float = 1.0,
        backoff_max_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        poll_s: float = 0.2,
    ) -> None:
        self.children = [Child(name, list(argv)) for name, argv in commands.items()]
        self.backoff_first_s = backoff_first_s
        self.backoff_max_s = backoff_max_s
        self.stop_timeout_s = stop_timeout_s
        self.poll_s = poll_s
        self._stopping = False

    def stop(self, *_: object) -> None:
        self._stopping = True

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv)
        child.started_at = time.monotonic()
        log.info("started", extra={"fields": {"child": child.name, "pid": child.proc.pid}})

    def run(self) -> int:
        for child in self.children:
            self._start(child)
        code = 0
        while not self._stopping:
            time.sleep(self.poll_s)
            now = time.monotonic()
            for child in self.children:
                if child.proc is None:
                    if now >= child.due_at:
                        self._start(child)
                    continue
                rc = child.proc.poll()
                if rc is None:
                    if now - child.started_at >= STEADY_S:
                        child.ever_ran_steady = True
                    continue
                ran_s = now - child.started_at
                fields = {"child": child.name, "exit": rc, "ran_s": round(ran_s, 1)}
                if rc in FATAL_AT_START and child.restarts == 0 and not child.ever_ran_steady:
                    log.error("refused to start; stopping all", extra={"fields": fields})
                    code = rc
                    self._stopping = True
                    break
                child.backoff_s = (
                    self.backoff_first_s
                    if ran_s >= STEADY_S or child.backoff_s == 0
                    else min(child.backoff_s * 2, self.backoff_max_s)
                )
                child.restarts += 1
                child.proc = None
                child.due_at = now + child.backoff_s
                fields["restart_in_s"] = child.backoff_s
                log.warning("exited; restarting", extra={"fields": fields})
        self._stop_all()
        return code

    def _stop_all(self) -> None:
        alive = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for proc in alive:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.info("all stopped")


def qadam_commands(names: Sequence[str], insecure_dev: bool) -> dict[str, list[str]]:
    """The command line of each named process, run by this interpreter's ``qadam``."""
    flag = ["--insecure-dev"] if insecure_dev else []
    return {n: [sys.executable, "-m", "tools.cli", *PROCESSES[n], *flag] for n in names}


def main(names: Sequence[str] | None = None, insecure_dev: bool = False) -> int:
    from cloud import logs

    logs.setup("supervisor")
    sup = Supervisor(qadam_commands(list(names or PROCESSES), insecure_dev))
    signal.signal(signal.SIGTERM, sup.stop)
    signal.signal(signal.SIGINT, sup.stop)
    return sup.run()
