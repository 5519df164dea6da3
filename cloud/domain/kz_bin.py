"""BIN (БСН/БИН), Kazakhstan's 12-digit business identification number: the number the state
"Social Wallet" knows a school by (docs/social-wallet.md, D24-F).

Layout (egov.kz "Business identification number"; python-stdnum's ``kz.bin``): YYMM of
registration, one digit for the kind of entity (4 resident legal entity, 5 non-resident, 6
individual entrepreneur in joint business), one for its unit (0 head office, 1 branch, 2
representative office, 3 peasant farm), five serial digits, one check digit. The check digit is
the IIN's (weights 1..11, then 3..11, 1, 2 when the first sum gives 10), so it is computed by
:func:`cloud.imports.iin.check_digit`, the one implementation. Published BINs agree with it:
940140000385 and 990140004654 (python-stdnum's examples), 140440031745 (DaData's example).
"""

from __future__ import annotations

from cloud.imports.iin import check_digit

KINDS = "456"
UNITS = "0123"


def problem(value: str) -> str | None:
    """Why ``value`` is not a valid BIN, or None when it is."""
    if len(value) != 12 or not value.isascii() or not value.isdigit():
        hint = " (a leading zero lost in Excel?)" if len(value) == 11 and value.isdigit() else ""
        return f"BIN must be exactly 12 digits{hint}"
    if not 1 <= int(value[2:4]) <= 12:
        return "BIN digits 3-4 must be the month of registration (01-12)"
    if value[4] not in KINDS:
        return "BIN digit 5 (kind of entity) must be 4, 5 or 6"
    if value[5] not in UNITS:
        return "BIN digit 6 (head office, branch ...) must be 0-3"
    if check_digit(value[:11]) != int(value[11]):
        return "BIN check digit is wrong (typo?)"
    return None


def check(value: str) -> str:
    """``value`` if it is a valid BIN, else ``ValueError`` saying why (the API's 422)."""
    why = problem(value)
    if why is not None:
        raise ValueError(why)
    return value


def make(yymm: str, serial: int, kind: str = "4", unit: str = "0") -> str:
    """A valid BIN (tests, demo data): the first serial from ``serial`` that has a check digit."""
    for s in range(serial, serial + 100):
        head = f"{yymm}{kind}{unit}{s % 100000:05d}"
        k = check_digit(head)
        if k is not None:
            return head + str(k)
    raise ValueError("no valid serial")  # pragma: no cover - 1 in 11 serials fail
