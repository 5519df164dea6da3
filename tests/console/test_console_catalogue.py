"""Every message of the console is translated into kk, ru and en (plural forms included), and
each catalogue's plural rule is CLDR's (kk: one/other, ru: one/few/many)."""

from __future__ import annotations

import pytest

from cloud.console import catalogue, i18n


def test_messages_are_found() -> None:
    found = catalogue.extracted()
    assert len(found) > 50
    assert "Wrong e-mail or password." in found  # from Python (N_)
    assert "Live events" in found  # from the templates and Python
    assert ("%(num)d event", "%(num)d events") in found  # a plural
    # the parents' app shares the catalogue (D27-F): its templates and its Python marks
    assert "Set your password" in found and "qadam for parents" in found
    assert "This invitation link has expired. Ask the school for a new one." in found


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_message_is_translated(lang: str) -> None:
    assert catalogue.untranslated(lang) == []


@pytest.mark.parametrize(("lang", "forms"), [("kk", 2), ("ru", 3), ("en", 2)])
def test_plural_forms(lang: str, forms: int) -> None:
    cat = catalogue.load(lang)
    assert cat.num_plurals == forms
    msg = cat.get("%(num)d event")
    assert msg is not None and len(msg.string) == forms and all(msg.string)


def test_placeholders_survive_translation() -> None:
    """A translation that drops or renames a %(name)s would fail at run time."""
    import re

    names = re.compile(r"%\((\w+)\)[sd]")
    for lang in i18n.LANGUAGES:
        for msg in catalogue.load(lang):
            if not msg.id:
                continue
            ids = msg.id if isinstance(msg.id, tuple) else (msg.id,)
            strings = msg.string if isinstance(msg.string, tuple) else (msg.string,)
            want = set(names.findall(ids[-1]))
            for s in strings:
                assert set(names.findall(s)) <= want | {"num"}, (lang, msg.id, s)
                assert set(names.findall(s)) >= want - {"num"}, (lang, msg.id, s)


def test_the_language_is_per_request() -> None:
    from cloud.console.web import env

    t = env.from_string("{{ _('Sign in') }}")
    assert t.render(locale="kk") == "Кіру"
    assert t.render(locale="ru") == "Вход"
    assert t.render(locale="en") == "Sign in"
