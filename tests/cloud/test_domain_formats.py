"""cloud/domain/formats.py: the one rule per value that the API, the importer and tools/ share
(issue #13 item 16). The module must import without FastAPI or a database driver."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cloud.domain import formats


def test_formats_imports_nothing_heavy() -> None:
    code = (
        "import sys, cloud.domain.formats as f; f.check_time_zone('Asia/Almaty');"
        " bad = [m for m in ('fastapi', 'pydantic', 'psycopg') if m in sys.modules];"
        " sys.exit(str(bad) if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("04a1b2c3", b"\x04\xa1\xb2\xc3"),
        (" 04:A1:B2:C3:D4:E5:F6 ", bytes.fromhex("04A1B2C3D4E5F6")),
        ("04-A1-B2-C3-D4-E5-F6-07-18-29", bytes.fromhex("04A1B2C3D4E5F6071829")),
    ],
)
def test_card_uids_of_the_three_iso_14443a_sizes(text: str, raw: bytes) -> None:
    assert formats.check_card_uid(text) == raw
    assert formats.card_uid_hex(text) == raw.hex().upper()


@pytest.mark.parametrize("text", ["", "04A1B2", "0102030405", "01" * 8, "01" * 11, "04A1B2CG"])
def test_other_card_uids_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not 4, 7 or 10 bytes of hex") as err:
        formats.check_card_uid(text)
    assert "\n" not in str(err.value)


def test_claim_tokens() -> None:
    token = "Ab0_-" * 4
    assert formats.check_claim_token(token) == token
    for bad in ["wrongtoken123", "a" * 129, "a" * 15 + "!", "-" * 15]:
        with pytest.raises(ValueError, match="16-128 characters") as err:
            formats.check_claim_token(bad)
        assert bad not in str(err.value) and "\n" not in str(err.value)
