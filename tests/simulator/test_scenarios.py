"""Every simulator scenario, small, against the real broker and database with an in-process
ingest: its invariants hold (taps stored exactly once, journals drained, scenario checks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simulator import scenarios
from simulator.scenarios.base import Context

SMALL = {
    "morning_rush": {"students": 80, "boards": 2, "minutes": 4, "speed": 60},
    "canteen_lunch": {"students": 50, "staff": 2, "boards": 2, "minutes": 4, "speed": 60},
    "network_outage": {"students": 60, "boards": 3, "minutes": 6, "speed": 60,
                       "options": {"outage": 2.0}},
    "power_cut": {"students": 50, "boards": 2, "minutes": 5, "speed": 60,
                  "options": {"cuts": 3}},
    "lost_card_revoked": {"students": 40, "boards": 2, "minutes": 5, "speed": 60,
                          "options": {"lost_taps": 8}},
    "whitelist_update_during_rush": {"students": 60, "boards": 2, "minutes": 5, "speed": 60,
                                     "options": {"changed": 0.1}},
}  # fmt: skip


@pytest.mark.parametrize("name", scenarios.NAMES)
def test_scenario_holds_its_invariants(name, database_url, topic_prefix, mqtt_addr, tmp_path):
    ctx = Context(
        database_url=database_url,
        mqtt_host=mqtt_addr[0],
        mqtt_port=mqtt_addr[1],
        prefix=topic_prefix,
        state_dir=tmp_path / "boards",
        wait=60,
        **SMALL[name],
    )
    summary = scenarios.get(name).run(ctx)
    text = "\n".join(summary.lines())
    assert summary.ok, text
    assert summary.taps > 0 and summary.stored == summary.taps, text
    assert summary.journal_left == 0, text
    assert summary.sim_seconds == SMALL[name]["minutes"] * 60
    if name == "network_outage":
        assert "0 events in journals" not in summary.figures["held offline"], text
    if name == "lost_card_revoked":
        assert "0 denied after" not in summary.figures["lost card"], text


def test_morning_rush_at_the_issue_size_runs_faster_than_real_time(
    database_url, topic_prefix, mqtt_addr, tmp_path
):
    """Issue #6's size, the scenario's defaults: 1,000 pupils (and 1 % strangers) through 4
    turnstiles in 20 simulated minutes. Simulated time runs faster than real time: the whole run
    (tapping and draining) takes less real time than it simulates."""
    mr = scenarios.get("morning_rush")
    assert (mr.DEFAULTS["students"], mr.DEFAULTS["boards"], mr.DEFAULTS["minutes"]) == (1000, 4, 20)
    ctx = Context(database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
                  prefix=topic_prefix, state_dir=tmp_path / "boards", wait=120)  # fmt: skip
    summary = mr.run(ctx)
    text = "\n".join(summary.lines())
    assert summary.ok, text
    assert (summary.students, summary.boards, summary.sim_seconds) == (1000, 4, 1200), text
    assert summary.granted == 1000, text  # every pupil through, once
    assert summary.taps == summary.granted + summary.denied and summary.denied > 0, text
    assert summary.stored == summary.taps and summary.journal_left == 0, text
    assert summary.sim_seconds > summary.real_seconds, text


def test_scenario_from_the_command_line(database_url, topic_prefix, mqtt_addr, tmp_path):
    cmd = [sys.executable, "-m", "tools.cli", "sim", "scenario", "morning_rush",
           "--database-url", database_url, "--mqtt-host", mqtt_addr[0],
           "--mqtt-port", str(mqtt_addr[1]), "--prefix", topic_prefix,
           "--students", "30", "--boards", "2", "--minutes", "2", "--speed", "60",
           "--state-dir", str(tmp_path)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "scenario:       morning_rush" in r.stdout
    assert "simulated time: 2.0 min at speed x60" in r.stdout
    assert "rows in cloud:  30" in r.stdout
    assert "invariants:     OK" in r.stdout


def test_summary_with_a_violation_fails():
    from simulator.scenarios.base import Summary

    s = Summary("x", violations=["3 taps not in the database"])
    assert not s.ok
    assert "VIOLATIONS (1):" in "\n".join(s.lines())
