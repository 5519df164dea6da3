"""Words and numbers of the menu pages (issue #15 "Menu planner"): meal periods, allergens, the
refusals of a dish form and a photo, money per locale. Marked with N_() for the ``menu`` part of
the catalogue and translated where they are shown."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_decimal

from cloud.console import i18n
from cloud.console.i18n import N_
from cloud.domain import dish_photos

# the boards' period names the firmware and schools use; another name is shown as it is
PERIOD_NAMES = {
    "breakfast": N_("Breakfast"),
    "lunch": N_("Lunch"),
    "snack": N_("Afternoon snack"),
    "dinner": N_("Dinner"),
}
# cloud/domain/allergens.py ALLERGENS (EU 1169/2011 Annex II), in that order
ALLERGEN_NAMES = {
    "gluten": N_("gluten"),
    "crustaceans": N_("crustaceans"),
    "eggs": N_("eggs"),
    "fish": N_("fish"),
    "peanuts": N_("peanuts"),
    "soybeans": N_("soybeans"),
    "milk": N_("milk"),
    "nuts": N_("tree nuts"),
    "celery": N_("celery"),
    "mustard": N_("mustard"),
    "sesame": N_("sesame"),
    "sulphites": N_("sulphites"),
    "lupin": N_("lupin"),
    "molluscs": N_("molluscs"),
}
# the domain's one-line refusals of a photo, as the page says them
PHOTO_ERRORS = {
    dish_photos.TOO_BIG: N_("The photo is larger than 8 MB."),
    dish_photos.EMPTY: N_("The photo file is empty."),
    dish_photos.NOT_AN_IMAGE: N_("The file is not a photo: use a JPEG, PNG or WebP image."),
    dish_photos.TOO_MANY_PIXELS: N_("The photo has too many pixels (at most 50 million)."),
    dish_photos.BROKEN: N_("The photo is damaged and could not be read."),
}
# a dish form's field that the API's model refused
FIELD_ERRORS = {
    "name_kk": N_("Enter the dish's name in Kazakh (up to 200 characters)."),
    "name_ru": N_("Enter the dish's name in Russian (up to 200 characters)."),
    "name_en": N_("The English name is at most 200 characters."),
    "price": N_("Enter the price as a number, for example 350 or 350.50."),
    "allergens": N_("Unknown allergen."),
}


def money(lang: str, value: Decimal | int) -> str:
    """350 -> "350 ₸", 1250.5 -> "1 250,50 ₸" (kk, ru) or "1,250.50 ₸" (en)."""
    whole = Decimal(value) == Decimal(value).to_integral_value()
    pattern = "#,##0" if whole else "#,##0.00"
    return format_decimal(value, format=pattern, locale=i18n.CLDR[lang]) + "\u00a0₸"


def period_label(lang: str, name: str) -> str:
    label = PERIOD_NAMES.get(name)
    return i18n.gettext(lang, label) if label else name


def allergen_labels(lang: str, names: list[str]) -> str:
    return ", ".join(i18n.gettext(lang, ALLERGEN_NAMES.get(n, n)) for n in names)
