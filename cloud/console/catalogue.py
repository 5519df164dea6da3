"""The console's messages as the code and templates use them, for the catalogues' upkeep and the
completeness test.

``python -m cloud.console.catalogue [--into PART]`` adds the messages no file of a language has
yet to that language's PART.po (default messages.po; empty, to be translated) and lists those
still untranslated; ``--check`` only lists. One file per part of the console (people.po,
fleet.po, ...) lets parts be translated side by side; the languages' files are merged when
loaded (cloud/console/i18n.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from cloud.console.i18n import LANGUAGES, catalogue_path, load_catalogue

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
    """All of the language's files, merged."""
    return load_catalogue(lang)


def untranslated(lang: str) -> list[str]:
    cat = load(lang)
    missing = []
    for key in extracted():
        msgid = key if isinstance(key, str) else key[0]
        msg = cat.get(msgid)
        strings = (
            []
            if msg is None
            else (list(msg.string) if isinstance(msg.string, tuple) else [msg.string])
        )
        if not strings or not all(strings):
            missing.append(msgid)
    return missing


def update(part: str = "messages") -> None:
    keys = extracted()
    for lang in LANGUAGES:
        known = load(lang)
        path = catalogue_path(lang, part)
        if path.exists():
            with path.open("rb") as src:
                cat = read_po(src, locale=lang)
        else:
            cat = Catalog(locale=lang, project="qadam console")
        for key, where in keys.items():
            if known.get(key if isinstance(key, str) else key[0]) is None:
                places = [w.rsplit(":", 1) for w in where]
                cat.add(key, locations=[(f, int(n)) for f, n in places])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            write_po(out, cat, width=100, omit_header=False, sort_output=True, no_location=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    if any(a not in ("--check", "--into") for a in args if not a.isidentifier()) or (
        "--into" in args and args.index("--into") + 1 >= len(args)
    ):
        print("usage: python -m cloud.console.catalogue [--check | --into PART]", file=sys.stderr)
        sys.exit(2)
    if "--check" not in args:
        update(args[args.index("--into") + 1] if "--into" in args else "messages")
    bad = {lang: untranslated(lang) for lang in LANGUAGES}
    for lang, msgids in bad.items():
        for m in msgids:
            print(f"{lang}: untranslated: {m!r}")
    sys.exit(1 if any(bad.values()) else 0)
