"""`qadam run-all` (cloud/supervisor.py): a dead child is started again with backoff, a child
refusing its first start stops the set with its code, SIGTERM stops every child; and the JSON
log lines every process writes (cloud/logs.py)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cloud import logs
from cloud.supervisor import PROCESSES, Supervisor, qadam_commands
from tools.cli import WORKERS, build_parser, main

PY = sys.executable


def _script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return [PY, str(path)]


def _wait(cond, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_a_dead_child_is_restarted_with_backoff(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    crash = _script(
        tmp_path, "crash", f"open({str(runs)!r}, 'a').write('x')\nraise SystemExit(1)\n"
    )
    steady = _script(tmp_path, "steady", "import time\nwhile True: time.sleep(1)\n")
    sup = Supervisor({"crash": crash, "steady": steady}, backoff_first_s=0.1, backoff_max_s=0.4)
    import threading

    t = threading.Thread(target=sup.run)
    t.start()
    try:
        assert _wait(lambda: runs.exists() and len(runs.read_text()) >= 4)
        by_name = {c.name: c for c in sup.children}
        assert by_name["crash"].restarts >= 3
        assert by_name["crash"].backoff_s <= 0.4  # capped
        assert by_name["steady"].restarts == 0
        steady_proc = by_name["steady"].proc
        assert steady_proc is not None and steady_proc.poll() is None
    finally:
        sup.stop()
        t.join(timeout=20)
    assert not t.is_alive()
    assert steady_proc.poll() is not None  # stopped with the set


def test_a_child_refusing_to_start_stops_the_set(tmp_path: Path) -> None:
    refuse = _script(tmp_path, "refuse", "raise SystemExit(2)\n")
    steady = _script(tmp_path, "steady", "import time\nwhile True: time.sleep(1)\n")
    sup = Supervisor({"refuse": refuse, "steady": steady}, backoff_first_s=0.1)
    assert sup.run() == 2
    steady_proc = next(c.proc for c in sup.children if c.name == "steady")
    assert steady_proc is not None and steady_proc.poll() is not None


def test_sigterm_stops_every_child(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = (
        "import os, time\n"
        f"open({str(pids)!r}, 'a').write(str(os.getpid()) + '\\n')\n"
        "while True: time.sleep(1)\n"
    )
    child = _script(tmp_path, "child", body)
    driver = _script(
        tmp_path,
        "driver",
        f"import sys\nsys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        + "import signal\nfrom cloud.supervisor import Supervisor\n"
        + f"sup = Supervisor({{'a': {child!r}, 'b': {child!r}}})\n"
        + "signal.signal(signal.SIGTERM, sup.stop)\nraise SystemExit(sup.run())\n",
    )
    proc = subprocess.Popen(driver)
    try:
        assert _wait(lambda: pids.exists() and len(pids.read_text().split()) == 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        for pid in map(int, pids.read_text().split()):
            assert _wait(lambda pid=pid: not _alive(pid), 5), pid
    finally:
        if proc.poll() is None:
            proc.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of the (exited) supervisor is reaped by init; treat it as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_every_process_has_a_command() -> None:
    assert set(PROCESSES) >= {"api", "ingest"} | {f"worker.{n}" for n in WORKERS}
    cmds = qadam_commands(list(PROCESSES), insecure_dev=True)
    parser = build_parser()
    for argv in cmds.values():
        assert argv[:3] == [PY, "-m", "tools.cli"] and argv[-1] == "--insecure-dev"
        parser.parse_args(argv[3:])  # each is a valid `qadam` command line


def test_run_all_refuses_an_unknown_name(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["run-all", "--only", "api,nope"]) == 2
    assert "unknown process nope" in capsys.readouterr().err


def test_log_lines_are_json_with_the_same_keys(capsys) -> None:  # type: ignore[no-untyped-def]
    logs.setup("worker.test")
    try:
        logging.getLogger("x.y").info("hello %s", "world", extra={"fields": {"n": 3}})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("x.y").exception("failed")
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [line["msg"] for line in lines] == ["hello world", "failed"]
    for line in lines:
        assert {"ts", "level", "process", "logger", "msg"} <= set(line)
        assert line["process"] == "worker.test" and line["logger"] == "x.y"
    assert lines[0]["n"] == 3 and lines[0]["level"] == "info"
    assert "ValueError: boom" in lines[1]["exc"]


def test_uvicorn_config_names_the_process() -> None:
    import logging.config

    cfg = logs.uvicorn_config("api")
    logging.config.dictConfig(cfg)
    try:
        handler = logging.getLogger().handlers[0]
        rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "GET /", None, None)
        line = json.loads(handler.format(rec))
        assert line["process"] == "api" and line["logger"] == "uvicorn.access"
    finally:
        logging.getLogger().handlers.clear()
