"""Images for the menu pages' tests (importable: tests/console is on sys.path): a phone-like
JPEG with EXIF (camera, GPS, a rotation), a PNG, and files that only pretend to be photos."""

from __future__ import annotations

import io
from datetime import date, timedelta

from PIL import Image

GPS_IFD = 0x8825
ORIENTATION = 0x0112  # 6: the camera was turned 90° clockwise; viewers rotate the pixels


def phone_jpeg(width: int = 1200, height: int = 600) -> bytes:
    """A landscape JPEG as a phone writes it held upright: EXIF says "rotate 90°", names the
    camera and where it was taken."""
    img = Image.new("RGB", (width, height), (230, 150, 40))
    for x in range(0, width, 40):  # some detail, so the JPEG is not trivially small
        img.paste((120, 60, 20), (x, 0, x + 10, height))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Model X"  # Model
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (43.0, 15.0, 0.0), 3: "E", 4: (76.0, 57.0, 0.0)})
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def png(width: int = 300, height: int = 300, color: tuple[int, int, int] = (60, 150, 80)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (20, 20)).save(out, "GIF")
    return out.getvalue()


def next_monday(today: date) -> date:
    return today + timedelta(days=7 - today.weekday())
