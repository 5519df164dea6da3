"""Allergen names <-> the whitelist's 16-bit allergen mask."""

from __future__ import annotations

import pytest

from cloud.domain.allergens import ALLERGENS, to_mask, to_names


def test_fourteen_allergens_fit_the_mask_in_a_fixed_order() -> None:
    assert len(ALLERGENS) == 14 and len(set(ALLERGENS)) == 14
    assert ALLERGENS[0] == "gluten" and ALLERGENS[6] == "milk"
    assert to_mask(ALLERGENS) == (1 << 14) - 1 <= 0xFFFF


@pytest.mark.parametrize(
    ("names", "mask"),
    [([], 0), (["gluten"], 1), (["milk", "peanuts"], 0b1010000), (["molluscs"], 1 << 13)],
)
def test_round_trip(names: list[str], mask: int) -> None:
    assert to_mask(names) == mask
    assert to_names(mask) == sorted(names, key=ALLERGENS.index)


def test_duplicates_collapse_and_unknown_names_fail() -> None:
    assert to_mask(["milk", "milk"]) == to_mask(["milk"])
    with pytest.raises(ValueError):
        to_mask(["kryptonite"])
