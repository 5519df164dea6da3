"""Runs every firmware case module (tests/firmware/cases/test_*.py) inside the real MicroPython
VM with the board's heap size, one pytest test per module."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CASES = sorted(p.stem for p in (HERE / "cases").glob("test_*.py"))


def micropython() -> str:
    exe = Path(sys.executable).with_name("micropython")
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if not found:
        pytest.skip("micropython binary not found")
    return found


@pytest.mark.parametrize("module", CASES)
def test_case_module_in_micropython(module: str) -> None:
    proc = subprocess.run(
        [micropython(), "-X", "heapsize=64K", str(HERE / "mp_runner.py"), module],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "PASS" in out and "FAIL" not in out, out
