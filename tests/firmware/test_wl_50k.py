"""A 50,000-card whitelist built on the host with the cloud's builder
(cloud.domain.whitelist.build_whitelist, random card keys, varied attributes), looked up by the
firmware's Whitelist in the MicroPython VM at the board's heap size (-X heapsize=64K) and under
CPython: the case cases/test_fw_wl_50k.py reads the files named by QADAM_WL50K."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.domain.whitelist import build_whitelist
from simulator.board import micropython_binary

HERE = Path(__file__).resolve().parent
N = 50_000
EVERY = 50
MISSES = 1_000
KINDS = ("student", "staff")


@pytest.fixture(scope="module")
def wl50k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wl50k")
    rnd = random.Random(50_000)
    keys: set[bytes] = set()
    while len(keys) < N:
        keys.add(rnd.randbytes(8))
    entries = [
        (k.hex(), KINDS[i % 2], i % 4, rnd.randrange(256), rnd.randrange(65536))
        for i, k in enumerate(keys)
    ]
    data = build_whitelist(12, entries)
    assert len(data) == 32 + 12 * N  # 600,032 bytes
    (d / "wl.bin").write_bytes(data)
    body = data[32:]
    (d / "hits.bin").write_bytes(b"".join(body[i * 12 : i * 12 + 12] for i in range(0, N, EVERY)))
    misses = [b"\x00" * 8, b"\xff" * 8]
    while len(misses) < MISSES:
        k = rnd.randbytes(8)
        if k not in keys:
            misses.append(k)
    (d / "misses.bin").write_bytes(b"".join(misses))
    return d


@pytest.mark.parametrize("vm", ["micropython", "cpython"])
def test_50k_whitelist_lookups(wl50k: Path, vm: str) -> None:
    argv = ([micropython_binary(), "-X", "heapsize=64K"] if vm == "micropython"
            else [sys.executable])  # fmt: skip
    proc = subprocess.run(
        [*argv, str(HERE / "mp_runner.py"), "test_fw_wl_50k"],
        env=dict(os.environ, QADAM_WL50K=str(wl50k)),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "PASS test_fw_wl_50k.test_50k_lookups" in out and "FAIL" not in out, out
    assert f"count={N} lookups={N // EVERY + MISSES}" in out, out
    if vm == "micropython":
        assert "alloc=0" in out, out  # measured with gc disabled over 1,000 lookups
