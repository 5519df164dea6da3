"""The smallest heap (KB) a door with the OTA layout downloads a release with, by bisection: the
real firmware in the MicroPython VM (simulator/ota_board.py), the broker on 127.0.0.1:1883, paho
as the cloud (tests/firmware/test_ota_door_heap.py's). A developer's tool, not a test:

    python -m tests.firmware.ota_heap_margin [low high]

It prints the smallest heap with which the first offer is taken and every chunk written, and
the margin to the door's 64 KiB budget (D29-G). Since a failure is a MemoryError in the OTA
handler (a new qstr pool or a block the cut-up heap lacks), the figure jumps rather than creeps:
58 KB before D28-I's receive path, 78 KB after it, 60 KB with D29-G. Run it from another
checkout (git archive COMMIT | tar -x -C DIR) to measure a commit."""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from simulator.board import BoardConfig
from simulator.ota_board import OtaBoard
from tests.firmware.test_ota_door_heap import KEY, _cloud, _release
from tools.release import public_key


def downloads(kb: int, doc: dict, image: bytes, tmp: Path) -> bool:
    prefix = f"m{uuid.uuid4().hex[:10]}"
    cfg = BoardConfig(device="door-m", school="s1", site_key=b"k" * 32, prefix=prefix,
                      extra={"ota_pub": public_key(KEY)})  # fmt: skip
    b = OtaBoard(cfg, tmp / prefix, heap=f"{kb}K")
    b.write_flash(None)
    base = f"{prefix}/v1/dev/door-m/"
    cloud = _cloud(base, image, 7, prefix)
    try:
        try:
            b.start()
            b.wait_for(lambda: b.mqtt_up, 20, "to connect")
        except Exception:
            return False  # it does not even boot in this heap
        offer = {"v": 1, "id": 7, "ver": "0.2.0", "size": len(image), "sha256": doc["sha256"],
                 "sig": doc["signature"]}  # fmt: skip
        cloud.publish(base + "ota", json.dumps(offer).encode(), qos=1)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            if any("MemoryError" in x for x in b.output):
                return False
            if any('"check":1' in x for x in b.output):
                return True
            time.sleep(0.2)
        return False
    finally:
        b.stop()
        cloud.loop_stop()
        cloud.disconnect()


def main(argv: list[str]) -> int:
    low, high = (int(argv[0]), int(argv[1])) if len(argv) == 2 else (48, 96)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        doc, image = _release(tmp)
        if not downloads(high, doc, image, tmp):
            print(f"door OTA download FAILS at {high} KB", flush=True)
            return 1
        while high - low > 1:
            mid = (low + high) // 2
            if downloads(mid, doc, image, tmp):
                high = mid
            else:
                low = mid
    print(f"door OTA download passes from {high} KB (margin {64 - high} KB to 64)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
