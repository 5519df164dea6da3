"""Column headers: Russian, Kazakh and English names for each field (case-insensitive; spaces,
dots, dashes and underscores do not matter)."""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["students", "staff", "guardians"]

ALIASES: dict[str, tuple[str, ...]] = {
    "full_name": ("ФИО", "Ф.И.О.", "Full name", "Name", "Имя", "Аты-жөні", "Толық аты-жөні"),
    "class": ("Класс", "Class", "Сынып", "Form"),
    "iin": ("ИИН", "IIN", "ЖСН", "External id", "ИИН сотрудника"),
    "cards": (
        "Номер карты",
        "Номера карт",
        "Карта",
        "Карты",
        "Card UID",
        "Card UIDs",
        "Card",
        "Cards",
        "UID",
        "Карта нөмірі",
        "Карточка",
    ),
    "meal": ("Категория питания", "Питание", "Meal category", "Meal", "Тамақтану санаты"),
    "email": ("Email", "E-mail", "Эл. почта", "Электронная почта", "Почта", "Электрондық пошта"),
    "phone": ("Телефон", "Тел", "Phone", "Мобильный", "Телефон нөмірі"),
    "student_account": (  # D29-E: yes makes the pupil an app account
        "Student account",
        "Pupil account",
        "App account",
        "Учетная запись ученика",
        "Учётная запись ученика",
        "Аккаунт ученика",
        "Доступ в приложение",
        "Оқушы аккаунты",
        "Оқушының есептік жазбасы",
    ),
    "child_iins": (
        "ИИН ребенка",
        "ИИН ребёнка",
        "ИИН детей",
        "ИИН ученика",
        "ИИН учащегося",
        "Child IIN",
        "Child IINs",
        "Children IIN",
        "Children IINs",
        "Student IIN",
        "Баланың ЖСН",
        "Баланың ИИН",
        "Балалардың ЖСН",
    ),
}

FIELDS: dict[Kind, tuple[str, ...]] = {
    "students": ("full_name", "iin", "class", "cards", "meal", "student_account"),
    "staff": ("full_name", "iin", "cards", "meal"),
    "guardians": ("full_name", "email", "child_iins", "phone"),
}
REQUIRED: dict[Kind, tuple[str, ...]] = {
    "students": ("full_name", "iin"),
    "staff": ("full_name", "iin"),
    "guardians": ("full_name", "email", "child_iins"),
}
# read, checked for duplicates of the header, but not stored (no column for it yet)
NOT_STORED = ("phone",)


def norm(header: str) -> str:
    return re.sub(r"[\s._\-]+", "", header.casefold().replace("ё", "е"))


_LOOKUP = {norm(a): f for f, aliases in ALIASES.items() for a in (*aliases, f)}


def map_header(kind: Kind, header: list[str]) -> tuple[dict[str, int], list[str], list[str]]:
    """(field -> column index, ignored headers, problems). A problem is a missing required
    column or a field given by two columns."""
    found: dict[str, int] = {}
    ignored: list[str] = []
    problems: list[str] = []
    for i, h in enumerate(header):
        if not h:
            continue
        f = _LOOKUP.get(norm(h))
        if f == "child_iins" and kind != "guardians":  # "ИИН ученика" in a students file
            f = "iin"
        if f is None or f not in FIELDS[kind]:
            ignored.append(h)
        elif f in found:
            problems.append(f"columns {header[found[f]]!r} and {h!r} both give {f}")
        else:
            found[f] = i
    for f in REQUIRED[kind]:
        if f not in found:
            problems.append(f"missing column {f}: name it one of {', '.join(ALIASES[f])}")
    return found, ignored, problems
