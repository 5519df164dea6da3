"""The 14 allergens (cloud/domain/allergens.py, bit order) as people read them, for the parents'
app's menu and restrictions pages."""

from __future__ import annotations

from cloud.console import i18n
from cloud.console.i18n import N_
from cloud.domain.allergens import ALLERGENS

ALLERGEN_NAMES = {
    "gluten": N_("gluten"), "crustaceans": N_("crustaceans"), "eggs": N_("eggs"),
    "fish": N_("fish"), "peanuts": N_("peanuts"), "soybeans": N_("soybeans"),
    "milk": N_("milk"), "nuts": N_("nuts"), "celery": N_("celery"), "mustard": N_("mustard"),
    "sesame": N_("sesame"), "sulphites": N_("sulphites"), "lupin": N_("lupin"),
    "molluscs": N_("molluscs"),
}  # fmt: skip
assert tuple(ALLERGEN_NAMES) == ALLERGENS


def named(lang: str, names: list[str] | tuple[str, ...]) -> list[str]:
    """Allergen codes in the page's language, in the canonical order."""
    return [i18n.gettext(lang, ALLERGEN_NAMES[n]) for n in ALLERGENS if n in names]
