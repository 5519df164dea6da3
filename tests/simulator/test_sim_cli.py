"""`qadam sim` from the command line: boards tap by schedule and the summary adds up."""

from __future__ import annotations

import subprocess
import sys

from cloud.ingest.service import Ingest
from cloud.settings import Settings


def _where(database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], state) -> list[str]:
    """Arguments that point the simulator at this test's database, broker prefix and flash."""
    return [
        "--database-url", database_url, "--mqtt-host", mqtt_addr[0],
        "--mqtt-port", str(mqtt_addr[1]), "--prefix", topic_prefix, "--state-dir", str(state),
    ]  # fmt: skip


def _sim(args: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "sim", *args],
        capture_output=True,
        text=True,
        timeout=240,
        **kw,
    )


def test_sim_help_shows_the_scenario_as_optional() -> None:
    result = _sim(["--help"])
    assert result.returncode == 0, result.stderr
    usage = result.stdout.split("\n\n", 1)[0]
    assert "usage: qadam sim [--boards N] [--taps N]" in usage
    assert "qadam sim scenario NAME [options]" in usage
    assert "scenario NAME ..." not in usage  # not shown as a required positional
    scenario = _sim(["scenario", "--help"])
    assert scenario.stdout.startswith("usage: qadam sim scenario [-h]"), scenario.stdout


def test_sim_taps_by_schedule_and_prints_summary(database_url, topic_prefix, mqtt_addr, tmp_path):
    ingest = Ingest(
        Settings(
            database_url=database_url,
            mqtt_host=mqtt_addr[0],
            mqtt_port=mqtt_addr[1],
            topic_prefix=topic_prefix,
            ingest_client_id=f"ingest-{topic_prefix}",
        )
    )
    ingest.start()
    try:
        where = _where(database_url, topic_prefix, mqtt_addr, tmp_path)
        result = _sim([*where, "--boards", "3", "--students", "20", "--staff", "2", "--taps", "30"])
    finally:
        ingest.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "taps made:      30 (" in out
    assert "events acked:   30" in out
    assert "journals left:  0 unacked" in out
    assert "rows in cloud:  30" in out


def test_sim_on_command_reads_stdin(database_url, topic_prefix, mqtt_addr, tmp_path):
    # No ingest runs: taps are decided and journaled on the boards, nothing is acked.
    where = _where(database_url, topic_prefix, mqtt_addr, tmp_path)
    result = _sim(
        [*where, "--boards", "2", "--students", "5", "--staff", "0", "--interactive",
         "--wait", "1"],  # fmt: skip
        input="tap 2 0\nstat\nbogus\nquit\n",
    )
    out = result.stdout
    assert "sim-school-entrance-in: {" in out
    assert out.count("sim-school-entrance-in: {") >= 2  # two taps, then the stat line
    assert "commands:" in out  # the unknown command shows the help
    assert "taps made:      2 (" in out
    assert "journals left:  2 unacked" in out
    assert result.returncode == 1, "unacked events must make the run fail"
