"""The console's messages as the code and templates use them, for the catalogues' upkeep and the
completeness test: ``python -m cloud.console.catalogue`` adds new messages to every language's
messages.po (empty, to be translated) and lists those still untranslated."""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from cloud.console.i18n import LANGUAGES, catalogue_path

CONSOLE = Path(__file__).resolve().parent
# Python: only N_() marks (gettext in Python takes the language first); templates: Jinja's
# default gettext keywords, plural forms included.
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]
KEYWORDS = {"N_": None, "_": None, "gettext": None, "ngettext": (1, 2)}
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "false"}}


def extracted() -> dict[str | tuple[str, str], list[str]]:
    """msgid (a pair for plurals) -> where it is used."""
    found: dict[str | tuple[str, str], list[str]] = {}
    for filename, lineno, message, _comments, _ctx in extract_from_dir(
        CONSOLE, METHODS, keywords=KEYWORDS, options_map=OPTIONS
    ):
        key = message if isinstance(message, str) else (message[0], message[1])
        if key:
            found.setdefault(key, []).append(f"{filename}:{lineno}")
    return found


def load(lang: str) -> Catalog:
    with catalogue_path(lang).open("rb") as f:
        return read_po(f, locale=lang)


def untranslated(lang: str) -> list[str]:
    cat = load(lang)
    missing = []
    for key in extracted():
        msgid = key if isinstance(key, str) else key[0]
        msg = cat.get(msgid)
        strings = [] if msg is None else (
            list(msg.string) if isinstance(msg.string, tuple) else [msg.string]
        )
        if not strings or not all(strings):
            missing.append(msgid)
    return missing


def update() -> None:
    keys = extracted()
    for lang in LANGUAGES:
        path = catalogue_path(lang)
        cat = load(lang) if path.exists() else Catalog(locale=lang, project="qadam console")
        for key, where in keys.items():
            if cat.get(key if isinstance(key, str) else key[0]) is None:
                places = [w.rsplit(":", 1) for w in where]
                cat.add(key, locations=[(f, int(n)) for f, n in places])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            write_po(f, cat, width=100, omit_header=False, sort_output=True, no_location=True)


if __name__ == "__main__":
    update()
    bad = {lang: untranslated(lang) for lang in LANGUAGES}
    for lang, msgids in bad.items():
        for m in msgids:
            print(f"{lang}: untranslated: {m!r}")
    sys.exit(1 if any(bad.values()) else 0)
