"""The parents' app's tab bar: each app page module registers its own tab, so adding a page
touches only that page's module. Paths are relative to /app/{lang}/ (the language is in the
path, D27-F)."""

from __future__ import annotations

_TABS: dict[str, tuple[int, str, tuple[str, ...]]] = {}
BOTH = ("guardian", "student")  # the app's roles: a student sees themself (D28-O)


def register(suffix: str, label: str, order: int, roles: tuple[str, ...] = ("guardian",)) -> None:
    """``suffix``: "" for the feed, "menu" for /app/{lang}/menu; ``label``: an N_() message;
    ``roles``: who sees the tab (its page admits the same roles). Orders: feed 10, menu 20,
    money 30, statistics 40, learning 15 (a student's, in sight on a phone), settings 90."""
    _TABS[suffix] = (order, label, roles)


def tabs(role: str | None = None) -> list[tuple[str, str]]:
    """The tabs ``role`` sees, in order; None: every tab."""
    shown = sorted((o, s, label) for s, (o, label, roles) in _TABS.items()
                   if role is None or role in roles)  # fmt: skip
    return [(s, label) for _o, s, label in shown]
