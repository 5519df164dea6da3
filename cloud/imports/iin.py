"""IIN (ЖСН/ИИН), Kazakhstan's 12-digit individual identification number.

Layout: YYMMDD (date of birth), one digit for century and sex (1/2: 1800s, 3/4: 1900s, 5/6:
2000s; odd male, even female), four serial digits, one check digit. The check digit is the
weighted sum of the first 11 digits (weights 1..11) mod 11; when that is 10, the weights
3..11, 1, 2 are used instead, and a second 10 means the number is never issued.
"""

from __future__ import annotations

from datetime import date

W1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
W2 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)
CENTURY = {"1": 1800, "2": 1800, "3": 1900, "4": 1900, "5": 2000, "6": 2000}


def check_digit(first11: str) -> int | None:
    """The check digit for 11 digits, or None when no valid IIN has them."""
    digits = [int(c) for c in first11]
    k = sum(d * w for d, w in zip(digits, W1, strict=True)) % 11
    if k == 10:
        k = sum(d * w for d, w in zip(digits, W2, strict=True)) % 11
    return None if k == 10 else k


def birth_date(iin: str) -> date | None:
    century = CENTURY.get(iin[6])
    if century is None:
        return None
    try:
        return date(century + int(iin[0:2]), int(iin[2:4]), int(iin[4:6]))
    except ValueError:
        return None


def problem(value: str, today: date | None = None) -> str | None:
    """Why ``value`` is not a valid IIN, or None when it is."""
    if len(value) != 12 or not value.isascii() or not value.isdigit():
        hint = " (a leading zero lost in Excel?)" if len(value) == 11 and value.isdigit() else ""
        return f"IIN must be exactly 12 digits{hint}"
    if value[6] not in CENTURY:
        return "IIN digit 7 (century and sex) must be 1-6"
    born = birth_date(value)
    if born is None:
        return "IIN digits 1-6 are not a valid date of birth (YYMMDD)"
    if born > (today or date.today()):
        return "IIN date of birth is in the future"
    if check_digit(value[:11]) != int(value[11]):
        return "IIN check digit is wrong (typo?)"
    return None


def make(born: date, serial: int, female: bool = False) -> str:
    """A valid IIN for ``born`` (tests, demo data): the first serial from ``serial`` on that
    gives a check digit."""
    sex = {1800: 1, 1900: 3, 2000: 5}[born.year // 100 * 100] + (1 if female else 0)
    for s in range(serial, serial + 100):
        head = f"{born:%y%m%d}{sex}{s % 10000:04d}"
        k = check_digit(head)
        if k is not None:
            return head + str(k)
    raise ValueError("no valid serial")  # pragma: no cover - 1 in 11 serials fail
