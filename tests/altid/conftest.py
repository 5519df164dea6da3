"""Fixtures of the alt-id page tests: the console tests' own (tests/console/conftest.py: the API
tests' world with school s1 and Alice, her guardian and her student account; a TestClient that
speaks like a browser; a live server for Chromium), loaded under another module name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
for _d in ("cloud", "console"):
    if str(_TESTS / _d) not in sys.path:
        sys.path.insert(0, str(_TESTS / _d))

_path = _TESTS / "console" / "conftest.py"
_spec = importlib.util.spec_from_file_location("console_conftest", _path)
assert _spec is not None and _spec.loader is not None
_console = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_console)
world = _console.world
client = _console.client
server = _console.server
