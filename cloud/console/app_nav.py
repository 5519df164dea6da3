"""The parents' app's tab bar: each app page module registers its own tab, so adding a page
touches only that page's module. Paths are relative to /app/{lang}/ (the language is in the
path, D27-F)."""

from __future__ import annotations

_TABS: dict[str, tuple[int, str]] = {}


def register(suffix: str, label: str, order: int) -> None:
    """``suffix``: "" for the feed, "menu" for /app/{lang}/menu; ``label``: an N_() message.
    Orders: feed 10, menu 20, money 30, statistics 40, settings 90."""
    _TABS[suffix] = (order, label)


def tabs() -> list[tuple[str, str]]:
    return [(s, label) for s, (_o, label) in sorted(_TABS.items(), key=lambda kv: kv[1])]
