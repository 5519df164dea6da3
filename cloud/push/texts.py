"""What a notification says, in the subscriber's language (kk, ru, en).

The text is built on our side and travels encrypted, so the parent app or service worker only
shows it; the structured fields ride along for apps that render their own.
"""

from __future__ import annotations

from typing import Any

LANGS = ("kk", "ru", "en")

# A tap's notice: {when} is the date and time in the school's zone (issue #13 item 9).
_TAP = {
    "in": {
        "kk": "{name} мектепке келді, {when}",
        "ru": "{name} пришёл(ла) в школу {when}",
        "en": "{name} arrived at school {when}",
    },
    "out": {
        "kk": "{name} мектептен шықты, {when}",
        "ru": "{name} вышел(ла) из школы {when}",
        "en": "{name} left school {when}",
    },
    "canteen": {
        "kk": "{name} асханада тамақтанды, {when}",
        "ru": "{name} получил(а) питание {when}",
        "en": "{name} had a meal {when}",
    },
}
_WHEN = {"kk": "{date}, {time}", "ru": "{date} в {time}", "en": "on {date} at {time}"}
# the tap has no corrected time (the board's clock was never synced): the time it was received
_RECEIVED = {
    "kk": " (құрылғы сағаты орнатылмаған: алынған уақыты)",
    "ru": " (часы терминала не были настроены: время получения)",
    "en": " (the board's clock was not set: time received)",
}
# Taps older than push_max_age_s when due: one summary per child and day instead of a storm.
_LATE = {
    "kk": "{name}: {first} – {last} аралығындағы {count} өту кешігіп келді (құрылғы желіден"
    " тыс болды); олар қатысу тізімінде",
    "ru": "{name}: {count} проход(ов) с {first} по {last} поступили с опозданием (терминал был"
    " не в сети); они есть в посещаемости",
    "en": "{name}: {count} passages from {first} to {last} arrived late (the board was"
    " offline); they are in the attendance list",
}
_LATE_UNTIMED = {
    "kk": "{name}: уақыты белгісіз {count} өту кешігіп келді; олар қатысу тізімінде",
    "ru": "{name}: {count} проход(ов) с неизвестным временем поступили с опозданием; они есть"
    " в посещаемости",
    "en": "{name}: {count} passages of unknown time arrived late; they are in the attendance list",
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
# The notices held during a guardian's quiet hours, sent as one when they end (D28-H).
_QUIET = {
    "kk": "Тыныш сағаттардағы хабарламалар ({count}):",
    "ru": "Уведомления за тихие часы ({count}):",
    "en": "Notices during your quiet hours ({count}):",
}
_MORE = {"kk": "тағы {n}", "ru": "и ещё {n}", "en": "and {n} more"}
QUIET_LINES = 6  # a summary lists the first notices; the feed has them all
_TITLE = {
    "quiet_summary": {"kk": "Мектеп", "ru": "Школа", "en": "School"},
    "tap": {"kk": "Мектеп", "ru": "Школа", "en": "School"},
    "tap_summary": {"kk": "Мектеп", "ru": "Школа", "en": "School"},
    "low_balance": {"kk": "Тамақ балансы", "ru": "Баланс питания", "en": "Meal balance"},
    "report_reminder": {"kk": "Есептер", "ru": "Отчёты", "en": "Reports"},
}


def render(kind: str, lang: str, fields: dict[str, Any]) -> dict[str, Any]:
    """-> the JSON object a subscriber receives: ``title``, ``body``, ``kind`` and the fields."""
    if lang not in LANGS:
        lang = "ru"
    if kind == "parent_notification":
        title = _TITLE["tap"][lang]
        when = _when(lang, fields.get("date") or "", fields.get("time") or "")
        text = _TAP.get(fields.get("reader") or "in", _TAP["in"])[lang]
        body = text.format(name=fields.get("name"), when=when)
        if fields.get("time_source") == "received":
            body += _RECEIVED[lang]
    elif kind == "tap_summary":
        title = _TITLE[kind][lang]
        if fields.get("first_date"):
            first = _when(lang, fields["first_date"], fields.get("first_time") or "", bare=True)
            last = _when(lang, fields.get("last_date") or "", fields.get("last_time") or "",
                         bare=True)  # fmt: skip
            body = _LATE[lang].format(
                name=fields.get("name"), count=fields.get("count"), first=first, last=last
            )
        else:
            body = _LATE_UNTIMED[lang].format(name=fields.get("name"), count=fields.get("count"))
    elif kind == "low_balance":
        title = _TITLE[kind][lang]
        body = (_BELOW if fields.get("below_floor") else _LOW)[lang].format(**fields)
    elif kind == "report_reminder":
        title = _TITLE[kind][lang]
        body = _REPORT[lang].format(**fields)
    elif kind == "quiet_summary":
        title = _TITLE[kind][lang]
        items = fields.get("items") or []
        lines = [_QUIET[lang].format(count=len(items))]
        lines += [render(i["kind"], lang, i)["body"] for i in items[:QUIET_LINES]]
        if len(items) > QUIET_LINES:
            lines.append(_MORE[lang].format(n=len(items) - QUIET_LINES))
        body = "\n".join(lines)
        fields = {"count": len(items)}
    else:
        raise ValueError(f"no text for notification kind {kind!r}")
    return {"kind": kind, "title": title, "body": body, **fields}


def _when(lang: str, date: str, time: str, bare: bool = False) -> str:
    """A date (YYYY-MM-DD) and time (HH:MM) as the language writes them: 07.12.2026 in kk and
    ru, 2026-12-07 in en; ``bare``: "DATE TIME" without the words around them."""
    if not date:
        return time
    if lang != "en":
        y, m, d = date.split("-")
        date = f"{d}.{m}.{y}"
    if bare:
        return f"{date} {time}".strip()
    return _WHEN[lang].format(date=date, time=time)
