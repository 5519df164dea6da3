"""Simulator scenarios: each a module with `run(ctx) -> Summary` (see base.py), runnable as
`qadam sim scenario NAME`. See docs/simulator.md."""

from __future__ import annotations

import importlib

NAMES = (
    "morning_rush",
    "canteen_lunch",
    "network_outage",
    "power_cut",
    "lost_card_revoked",
    "whitelist_update_during_rush",
)


def get(name: str):
    if name not in NAMES:
        raise KeyError(f"no scenario {name!r}; scenarios: {', '.join(NAMES)}")
    return importlib.import_module(f"simulator.scenarios.{name}")
