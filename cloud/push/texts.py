"""What a notification says, in the subscriber's language (kk, ru, en).

The text is built on our side and travels encrypted, so the parent app or service worker only
shows it; the structured fields ride along for apps that render their own.
"""

from __future__ import annotations

from typing import Any

LANGS = ("kk", "ru", "en")

_TAP = {
    "in": {
        "kk": "{name} мектепке келді, {time}",
        "ru": "{name} пришёл(ла) в школу в {time}",
        "en": "{name} arrived at school at {time}",
    },
    "out": {
        "kk": "{name} мектептен шықты, {time}",
        "ru": "{name} вышел(ла) из школы в {time}",
        "en": "{name} left school at {time}",
    },
    "canteen": {
        "kk": "{name} асханада тамақтанды, {time}",
        "ru": "{name} получил(а) питание в {time}",
        "en": "{name} had a meal at {time}",
    },
}
_LOW = {
    "kk": "{name}: тамақ балансы {balance} ₸",
    "ru": "{name}: баланс питания {balance} ₸",
    "en": "{name}: meal balance {balance} KZT",
}
_BELOW = {
    "kk": "{name}: баланс рұқсат етілген шектен төмен ({balance} ₸), толтырыңыз",
    "ru": "{name}: баланс ниже допустимого ({balance} ₸), пополните его",
    "en": "{name}: balance below the allowed floor ({balance} KZT), please top up",
}
_REPORT = {
    "kk": "{month} айлық есептері бекітілмеген; мерзімі {deadline}",
    "ru": "Отчёты за {month} не утверждены; срок {deadline}",
    "en": "Reports for {month} are not approved yet; due {deadline}",
}
_TITLE = {
    "tap": {"kk": "Мектеп", "ru": "Школа", "en": "School"},
    "low_balance": {"kk": "Тамақ балансы", "ru": "Баланс питания", "en": "Meal balance"},
    "report_reminder": {"kk": "Есептер", "ru": "Отчёты", "en": "Reports"},
}


def render(kind: str, lang: str, fields: dict[str, Any]) -> dict[str, Any]:
    """-> the JSON object a subscriber receives: ``title``, ``body``, ``kind`` and the fields."""
    if lang not in LANGS:
        lang = "ru"
    if kind == "parent_notification":
        title = _TITLE["tap"][lang]
        body = _TAP.get(fields.get("reader") or "in", _TAP["in"])[lang].format(**fields)
    elif kind == "low_balance":
        title = _TITLE[kind][lang]
        body = (_BELOW if fields.get("below_floor") else _LOW)[lang].format(**fields)
    elif kind == "report_reminder":
        title = _TITLE[kind][lang]
        body = _REPORT[lang].format(**fields)
    else:
        raise ValueError(f"no text for notification kind {kind!r}")
    return {"kind": kind, "title": title, "body": body, **fields}
