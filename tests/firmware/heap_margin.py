"""How close each firmware case module runs to the heap the suite gives it (64 KB; the canteen's
modules 72 KB, test_fw_micropython.heap_kb): the smallest
heap (in KB) each still passes with, by bisection. A developer's tool, not a test:

    python -m tests.firmware.heap_margin [module ...]
    python -m tests.firmware.heap_margin --pass-rate KB RUNS module ...

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


def pass_rate(module: str, kb: int, runs: int, env: dict[str, str]) -> int:
    """How many of `runs` runs pass at `kb`: for the cases whose heap use varies with the event
    loop's timing (lfs_ota_cuts: where its random power cuts land), where one bisection says
    little."""
    return sum(passes(module, kb, env) for _ in range(runs))


def main(argv: list[str]) -> int:
    env = vm_env()
    if argv[:1] == ["--pass-rate"]:  # --pass-rate KB RUNS module ...
        kb, runs = int(argv[1]), int(argv[2])
        for module in argv[3:]:
            print(f"{module:32} {pass_rate(module, kb, runs, env)}/{runs} pass at {kb} KB")
        return 0
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
