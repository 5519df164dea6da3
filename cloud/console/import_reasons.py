"""The import's row errors and file problems in the page's language.

The import code (cloud/imports/) words its reasons in English for the API, where clients read
them as they are. The wizard shows them translated: each English wording is matched here and
replaced by its catalogue message with the same values filled in. A wording not listed here is
shown as the API gives it (a test lists every reason the tests produce and requires a match)."""

from __future__ import annotations

import re

from cloud.console import i18n
from cloud.console.i18n import N_

# (English reason as a pattern with named groups, catalogue message with the same names)
_REASONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), m)
    for p, m in [
        (r"full name is required", N_("The full name is required.")),
        (r"full name is longer than 200 characters",
         N_("The full name is longer than 200 characters.")),
        (r"full name contains control characters",
         N_("The full name contains control characters.")),
        (r"IIN is required .*", N_("The IIN is required: it makes a re-import update a person"
                                   " instead of adding them again.")),
        (r"IIN must be exactly 12 digits \(a leading zero lost in Excel\?\)",
         N_("The IIN must have exactly 12 digits (did Excel drop a leading zero?).")),
        (r"IIN must be exactly 12 digits", N_("The IIN must have exactly 12 digits.")),
        (r"IIN digit 7 \(century and sex\) must be 1-6",
         N_("Digit 7 of the IIN (century and sex) must be 1 to 6.")),
        (r"IIN digits 1-6 are not a valid date of birth \(YYMMDD\)",
         N_("Digits 1 to 6 of the IIN are not a date of birth (YYMMDD).")),
        (r"IIN date of birth is in the future", N_("The IIN's date of birth is in the future.")),
        (r"IIN check digit is wrong \(typo\?\)",
         N_("The IIN's check digit is wrong (a typo?).")),
        (r"class name is longer than 50 characters",
         N_("The class name is longer than 50 characters.")),
        (r"class '(?P<v>.*)' does not exist at this school .*",
         N_("Class %(v)s does not exist at this school.")),
        (r"unknown meal category '(?P<v>.*)': .*",
         N_("Unknown meal category %(v)s: write free, reduced or paid (бесплатное, льготное,"
            " платное; тегін, жеңілдетілген, ақылы).")),
        (r"this school has no (?P<v>\w+) meal category yet: .*",
         N_("This school has no %(v)s meal category yet: create it first.")),
        (r"card UID (?P<v>.*) is not 4, 7 or 10 bytes of hex .*",
         N_("Card number %(v)s is not 8, 14 or 20 hexadecimal digits.")),
        (r"the same IIN is also in row (?P<n>\d+)",
         N_("The same IIN is also in row %(n)s.")),
        (r"this IIN belongs to a (?P<k>\w+) of this school \(person (?P<n>\d+)\), not a \w+",
         N_("This IIN belongs to another kind of person at this school (person %(n)s).")),
        (r"this IIN belongs to person (?P<n>\d+), who is deactivated: .*",
         N_("This IIN belongs to person %(n)s, who is deactivated: reactivate them first.")),
        (r"card (?P<v>\S+) is also in row (?P<n>\d+)",
         N_("Card %(v)s is also in row %(n)s.")),
        (r"card (?P<v>\S+) was revoked: .*",
         N_("Card %(v)s was revoked: a revoked card is never issued again.")),
        (r"card (?P<v>\S+) already belongs to another person \(id (?P<n>\d+)\)",
         N_("Card %(v)s already belongs to another person (id %(n)s).")),
        (r"student_account '(?P<v>.*)' is neither yes nor no: .*",
         N_("App account %(v)s: write yes or no (да or нет; иә or жоқ), or leave it empty.")),
        (r"e-mail is required .*", N_("The e-mail is required: guardians sign in with it.")),
        (r"not a valid e-mail address", N_("This is not a valid e-mail address.")),
        (r"at least one child IIN is required", N_("At least one child's IIN is required.")),
        (r"the same e-mail is in row (?P<n>\d+) with another name \((?P<v>.*)\)",
         N_("The same e-mail is in row %(n)s with another name (%(v)s).")),
        (r"this e-mail belongs to a (?P<v>\w+) account, not a guardian",
         N_("This e-mail belongs to a staff account, not a guardian.")),
        (r"this guardian account is deactivated", N_("This guardian's account is deactivated.")),
        (r"no student with IIN (?P<v>\d+) at this school .*",
         N_("No pupil with IIN %(v)s at this school: import the pupils first.")),
        (r"the student with IIN (?P<v>\d+) is deactivated .*",
         N_("The pupil with IIN %(v)s is deactivated.")),
        (r"columns '(?P<a>.*)' and '(?P<b>.*)' both give \w+",
         N_("The columns %(a)s and %(b)s give the same thing: keep one.")),
        (r"missing column (?P<f>\w+): name it one of (?P<v>.*)",
         N_("A column is missing: %(f)s. Name it one of: %(v)s.")),
        # whole-file problems (cloud/imports/reader.py)
        (r"file larger than (?P<n>\d+) MB", N_("The file is larger than %(n)s MB.")),
        (r"more than (?P<n>\d+) data rows: split the file",
         N_("The file has more than %(n)s rows: split it.")),
        (r"the file is empty", N_("The file is empty.")),
        (r"the first sheet is empty", N_("The first sheet of the workbook is empty.")),
        (r"the workbook has no sheets", N_("The workbook has no sheets.")),
        (r"the file has no header row", N_("The file has no header row.")),
        (r"old Excel \.xls is not supported.*",
         N_("Old Excel .xls files cannot be read: save it as .xlsx or CSV.")),
        (r"not a readable \.xlsx file.*", N_("This is not a readable .xlsx file.")),
        (r"the file contains NUL characters.*",
         N_("This is not a CSV or XLSX file (it holds binary data).")),
        (r"the file is not valid .*|cannot decode the file.*",
         N_("The text of the file cannot be read: save it as UTF-8 CSV or .xlsx.")),
        (r"malformed CSV near line (?P<n>\d+).*", N_("The CSV is malformed near line %(n)s.")),
    ]
]  # fmt: skip

# the import's field names, as the column they came from is called on the page
FIELD_NAMES = {
    "full_name": N_("Full name"),
    "iin": N_("IIN"),
    "class": N_("Class"),
    "cards": N_("Cards"),
    "meal": N_("Meal category"),
    "email": N_("E-mail"),
    "child_iins": N_("Children's IINs"),
    "phone": N_("Phone"),
    "student_account": N_("Pupil's app account"),
}


def known(reason: str) -> bool:
    return any(p.fullmatch(reason) for p, _ in _REASONS)


def translate(lang: str, reason: str) -> str:
    for pattern, message in _REASONS:
        m = pattern.fullmatch(reason)
        if m is None:
            continue
        # the API quotes values with repr(); the page shows them plain
        values = {k: v[1:-1] if len(v) > 1 and v[0] == v[-1] and v[0] in "'\"" else v
                  for k, v in m.groupdict().items()}  # fmt: skip
        if "f" in values and values["f"] in FIELD_NAMES:
            values["f"] = i18n.gettext(lang, FIELD_NAMES[values["f"]])
        if "v" in values and values["v"] in ("free", "reduced", "paid"):
            values["v"] = i18n.gettext(lang, i18n.CATEGORY_NAMES[values["v"]])
        return i18n.gettext(lang, message) % values
    return reason


def field_name(lang: str, field: str | None) -> str:
    if not field:
        return ""
    return i18n.gettext(lang, FIELD_NAMES[field]) if field in FIELD_NAMES else field
