"""How close each firmware case module runs to the heap the suite gives it (64 KB; the canteen's
modules 72 KB, test_fw_micropython.heap_kb): the smallest
heap (in KB) each still passes with, by bisection. A developer's tool, not a test:

    python -m tests.firmware.heap_margin [module ...]

A module within 1-2 KB of 64 fails on unrelated growth; keep the margin when changing firmware."""

import subprocess
import sys

from tests.firmware.test_fw_micropython import CASES, REPO, RUNNER, heap_kb, micropython, vm_env


def passes(module: str, kb: int, env: dict[str, str]) -> bool:
    argv = [micropython(), "-X", f"heapsize={kb}K", RUNNER, module]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    return proc.returncode == 0 and "FAIL" not in proc.stdout + proc.stderr


def smallest_heap(module: str, env: dict[str, str], low: int = 32, high: int = 64) -> int | None:
    if not passes(module, high, env):
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if passes(module, mid, env):
            high = mid
        else:
            low = mid
    return high


def main(argv: list[str]) -> int:
    env = vm_env()
    for module in argv or [*CASES, "lfs_cuts"]:
        cap = heap_kb(module)
        kb = smallest_heap(module, env, high=cap)
        if kb is None:
            print(f"{module:32} FAILS at {cap} KB", flush=True)
        else:
            print(f"{module:32} passes from {kb} KB (margin {cap - kb} KB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
