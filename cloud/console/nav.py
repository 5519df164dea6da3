"""The console's menu: each page module registers its own entry (who may see it, where it
sits), so adding a page touches only that page's module."""

from __future__ import annotations

from dataclasses import dataclass

from cloud.auth.principal import Principal, Role


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str  # an N_() message, translated where the menu is drawn
    roles: tuple[Role, ...] | None  # None: every console user
    order: int  # Today 10, Live 20, People 30, Import 35, Guardians 40, Menu 50, Fleet 60,
    # Reports 70, Social Wallet 80, Audit 90, Password 900, API 910


_ITEMS: dict[str, NavItem] = {}


def register(path: str, label: str, roles: tuple[Role, ...] | None, order: int) -> None:
    _ITEMS[path] = NavItem(path, label, roles, order)


def for_user(user: Principal) -> list[tuple[str, str]]:
    """(path, label) of the entries the user's role may open, in menu order."""
    items = sorted(_ITEMS.values(), key=lambda i: (i.order, i.path))
    return [(i.path, i.label) for i in items if i.roles is None or user.role in i.roles]
