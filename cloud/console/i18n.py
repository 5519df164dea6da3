"""The console's languages: one gettext catalogue per language, kept in several files per
language (cloud/console/locale/*/LC_MESSAGES/*.po: messages.po and one per part of the console,
merged and compiled in memory at start-up: no .mo in git) and Babel's CLDR data for dates and
numbers.

The language is the request's, never the process's: templates get ``gettext``/``ngettext``
callables that read ``locale`` from the template context (Jinja's
``install_gettext_translations`` would be process-wide and mix concurrent kk and ru requests).
"""

from __future__ import annotations

import io
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from jinja2 import pass_context
from jinja2.runtime import Context

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("kk", "ru", "en")
DEFAULT = "kk"
# the language's own name, for the switcher (not translated: a reader finds their own)
NAMES = {"kk": "Қазақша", "ru": "Русский", "en": "English"}
# CLDR locales for formatting: Kazakhstan's conventions for kk and ru (research/ui.md §4)
CLDR = {"kk": "kk_KZ", "ru": "ru_KZ", "en": "en"}
ZONE = ZoneInfo("Asia/Almaty")  # UTC+5 (the whole country since 2024-03-01)


def catalogue_path(lang: str, part: str = "messages") -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{part}.po"


def catalogue_parts(lang: str) -> list[Path]:
    """messages.po first, then the parts' files in name order."""
    first = catalogue_path(lang)
    others = sorted(p for p in first.parent.glob("*.po") if p != first)
    return [first, *others]


def load_catalogue(lang: str) -> Catalog:
    """The language's messages from all its files; a message translated in an earlier file
    wins over the same message in a later one."""
    with catalogue_path(lang).open("rb") as f:
        merged = read_po(f, locale=lang)
    for path in catalogue_parts(lang)[1:]:
        with path.open("rb") as f:
            part = read_po(f, locale=lang)
        for msg in part:
            if not msg.id:
                continue
            have = merged.get(msg.id)
            if have is None or not _translated(have.string):
                if have is not None:
                    merged.delete(msg.id)
                merged[msg.id] = msg
    return merged


def _translated(string: object) -> bool:
    return all(string) if isinstance(string, (tuple, list)) else bool(string)


@cache
def translations(lang: str) -> Translations:
    catalog = load_catalogue(lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def pick(*candidates: str | None, accept_language: str = "") -> str:
    """The first supported language among ``candidates`` (user setting, cookie), else the
    browser's preference, else kk."""
    for c in candidates:
        if c in LANGUAGES:
            return c
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return DEFAULT


def N_(message: str) -> str:
    """Marks a message in Python code for the catalogue; translated where it is shown."""
    return message


def gettext(lang: str, message: str) -> str:
    return str(translations(lang).ugettext(message))


@pass_context
def _gettext(ctx: Context, message: str) -> str:
    return gettext(ctx["locale"], message)


@pass_context
def _ngettext(ctx: Context, singular: str, plural: str, n: int) -> str:
    return str(translations(ctx["locale"]).ungettext(singular, plural, n))


# Labels of stored codes, marked for the catalogue and translated where shown.
ROLE_NAMES = {
    "platform_admin": N_("platform operator"),
    "district_authority": N_("district education authority"),
    "school_admin": N_("school administrator"),
    "canteen_operator": N_("canteen operator"),
    "technician": N_("technician"),
    "guardian": N_("parent or guardian"),
    "student": N_("student"),
}
CATEGORY_NAMES = {"free": N_("free"), "reduced": N_("reduced price"), "paid": N_("paid"),
                  "none": N_("no category")}  # fmt: skip
MODE_NAMES = {"door": N_("door"), "turnstile": N_("turnstile"), "canteen": N_("canteen")}
READER_NAMES = {"in": N_("entrance"), "out": N_("exit"), "canteen": N_("canteen")}
# event reasons (docs/protocol.md "Event reasons", "Canteen"); an unknown one is shown as its code
REASON_NAMES = {
    "ok": N_("allowed"),
    "unknown_card": N_("unknown card"),
    "no_whitelist": N_("the reader has no list of cards"),
    "bad_whitelist": N_("the reader's list of cards is damaged"),
    "schedule": N_("outside the allowed hours"),
    "antipassback": N_("already inside"),
    "antipassback_soft": N_("already inside (let in offline)"),
    "passage_timeout": N_("did not walk through"),
    "no_meal_period": N_("not a meal time"),
    "already_received": N_("meal already received"),
    "allergen": N_("blocked: allergen"),
    "free": N_("free meal"),
    "reduced": N_("reduced-price meal"),
    "paid": N_("paid meal"),
    "no_balance": N_("balance too low"),
    "offline_credit": N_("on credit (offline)"),
    "credit_limit": N_("credit limit reached"),
    "override_allergen": N_("allergen block overridden by staff"),
}


def install(env: Any) -> None:
    """Per-request gettext in templates (``{% trans %}`` and ``_()``) and the formatting
    filters, each reading the request's ``locale`` from the context."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)
    env.filters["datetime"] = _datetime
    env.filters["time"] = _time
    env.filters["number"] = _number
    env.filters["date_long"] = _date_long
    env.globals.update(ROLE_NAMES=ROLE_NAMES, CATEGORY_NAMES=CATEGORY_NAMES,
                       MODE_NAMES=MODE_NAMES, READER_NAMES=READER_NAMES,
                       REASON_NAMES=REASON_NAMES)  # fmt: skip


def _local(value: datetime, zone: str | None) -> datetime:
    return value.astimezone(ZoneInfo(zone) if zone else ZONE)


@pass_context
def _datetime(ctx: Context, value: datetime | None, zone: str | None = None) -> str:
    if value is None:
        return ""
    return format_datetime(_local(value, zone), "short", locale=CLDR[ctx["locale"]])


@pass_context
def _time(ctx: Context, value: datetime | None, zone: str | None = None) -> str:
    if value is None:
        return ""
    return format_time(_local(value, zone), "HH:mm:ss", locale=CLDR[ctx["locale"]])


@pass_context
def _date_long(ctx: Context, value: date) -> str:
    return format_date(value, "full", locale=CLDR[ctx["locale"]])


@pass_context
def _number(ctx: Context, value: int | float) -> str:
    return format_decimal(value, locale=CLDR[ctx["locale"]])
