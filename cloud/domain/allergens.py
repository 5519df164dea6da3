"""Allergens: names <-> the 16-bit mask in the whitelist (protocol.md, allergen mask).

Bit i is ALLERGENS[i]: the 14 allergens EU Regulation 1169/2011 Annex II lists (also used by
EAEU TR CU 022/2011), in that order. Bits 14 and 15 are reserved.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

Allergen = Literal[
    "gluten",
    "crustaceans",
    "eggs",
    "fish",
    "peanuts",
    "soybeans",
    "milk",
    "nuts",
    "celery",
    "mustard",
    "sesame",
    "sulphites",
    "lupin",
    "molluscs",
]
ALLERGENS: tuple[str, ...] = get_args(Allergen)


def to_mask(names: Iterable[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << ALLERGENS.index(name)  # ValueError for an unknown name
    return mask


def to_names(mask: int) -> list[str]:
    return [name for i, name in enumerate(ALLERGENS) if mask >> i & 1]
