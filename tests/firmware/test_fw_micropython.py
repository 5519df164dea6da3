"""Runs every firmware case module (tests/firmware/cases/test_*.py) inside the real MicroPython
VM with the board's heap size, one pytest test per module."""

import subprocess
from pathlib import Path

import pytest

from simulator.board import micropython_binary

HERE = Path(__file__).resolve().parent
CASES = sorted(p.stem for p in (HERE / "cases").glob("test_*.py"))


def micropython() -> str:
    # A missing VM is a broken install, not a reason to skip: fail loudly.
    return micropython_binary()


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
