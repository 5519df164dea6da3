"""The e-mails' words (plain text) in kk, ru and en, from the console's catalogues (part
``email``), filled in where the mail is queued (cloud/mail/queue.py)."""

from __future__ import annotations

from datetime import datetime

from babel.dates import format_datetime

from cloud.console import i18n
from cloud.console.i18n import N_

RESET_SUBJECT = N_("qadam: set a new password")
RESET_BODY = N_(
    "Hello,\n"
    "\n"
    "someone (we hope you) asked to set a new password for the qadam account %(email)s.\n"
    "Open this link to choose a new password. It works once, for one hour:\n"
    "\n"
    "%(url)s\n"
    "\n"
    "If you did not ask for this, ignore this e-mail: your password stays as it is.\n"
)
INVITE_SUBJECT = N_("qadam: your invitation to the parents' app")
INVITE_BODY = N_(
    "Hello, %(name)s.\n"
    "\n"
    "%(school)s invites you to the qadam parents' app: you will see when your children arrive,"
    " leave and receive a meal.\n"
    "Open this link to set your password. It works once, until %(until)s:\n"
    "\n"
    "%(url)s\n"
    "\n"
    "Your sign-in name is this e-mail address: %(email)s.\n"
)


def when(lang: str, value: datetime) -> str:
    return format_datetime(value.astimezone(i18n.ZONE), "d MMMM y, HH:mm", locale=i18n.CLDR[lang])


def reset(lang: str, email: str, url: str) -> tuple[str, str]:
    """(subject, body) of a password-reset mail."""
    t = i18n.gettext
    return t(lang, RESET_SUBJECT), t(lang, RESET_BODY) % {"email": email, "url": url}


def invitation(
    lang: str, name: str, school: str, email: str, url: str, until: datetime
) -> tuple[str, str]:
    """(subject, body) of an invitation mail."""
    t = i18n.gettext
    values = {"name": name or email, "school": school or "qadam", "email": email, "url": url,
              "until": when(lang, until)}  # fmt: skip
    return t(lang, INVITE_SUBJECT), t(lang, INVITE_BODY) % values
