"""Firmware tests: the case modules in cases/ import firmware modules the way the board does
(`from store.journal import Journal`), so firmware/ and cases/ go on sys.path."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRMWARE = HERE.parent.parent / "firmware"

for p in (str(FIRMWARE), str(HERE / "cases")):
    if p not in sys.path:
        sys.path.append(p)  # appended, not prepended: must not shadow other packages
