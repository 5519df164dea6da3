"""What install.sh sets up for backups (D29-A), as far as it runs here: the archiving settings in
PostgreSQL's conf.d pointing at the archive script and directory, the backup directory, and the
base-backup unit and timer running real `qadam backup` commands. Not run here: enabling the timer
and the first backup (no systemd as PID 1 in our containers); tests/deploy/test_pitr.py runs the
same commands and scripts against a cluster of its own."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

from tools.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
OTHER_STEPS = "packages,user,code,database,certs,broker,config,units,start"


def _install_backup_step(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "sh",
            str(REPO / "deploy/install.sh"),
            "--server-name",
            "127.0.0.1",
            "--root",
            str(root),
            "--skip",
            OTHER_STEPS,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def test_the_backup_step_writes_archiving_settings_and_the_directory(tmp_path: Path) -> None:
    r = _install_backup_step(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "== backup" in r.stdout and "== certs" not in r.stdout
    backup = tmp_path / "var/lib/qadam-backup"
    assert (backup / "wal").is_dir() and (backup / "base").is_dir()
    assert backup.stat().st_mode & 0o777 == 0o700
    (conf,) = tmp_path.glob("etc/postgresql/*/main/conf.d/qadam-archiving.conf")
    text = conf.read_text()
    assert re.search(r"^archive_mode = on$", text, re.M)
    m = re.search(r"^archive_command = '(\S+) %p %f (\S+)'$", text, re.M)
    assert m, text
    # with --root every path is under it; the script is the checkout's copy under opt/qadam
    assert m[1] == f"{tmp_path}/opt/qadam/deploy/backup/archive-wal.sh"
    assert m[2] == f"{backup}/wal"
    # run again (after a git pull): the same files, nothing refused
    again = _install_backup_step(tmp_path)
    assert again.returncode == 0, again.stderr
    assert conf.read_text() == text


def test_the_backup_unit_runs_real_qadam_commands_as_postgres(tmp_path: Path) -> None:
    r = _install_backup_step(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    units = tmp_path / "etc/systemd/system"
    service = _unit(units / "qadam-basebackup.service")["Service"]
    assert service["User"] == "postgres" and service["Type"] == "oneshot"
    assert service["ReadWritePaths"] == "/var/lib/qadam-backup"
    parser = build_parser()
    for key in ("ExecStart", "ExecStartPost"):
        argv = service[key].split()
        assert argv[0] == "/opt/qadam/.venv/bin/qadam"
        args = parser.parse_args(argv[1:])
        assert args.command == "backup" and str(args.dir) == "/var/lib/qadam-backup"
    timer = _unit(units / "qadam-basebackup.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
