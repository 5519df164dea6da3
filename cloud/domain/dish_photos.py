"""Dish photos (D28-D): an upload is decoded with Pillow (JPEG, PNG or WebP by its content, never
by its name), turned upright by its EXIF orientation, re-encoded without any metadata (no EXIF,
GPS, XMP or ICC copied over) as a JPEG of at most 800 px and a 200 px thumbnail, and stored in
``dish_photos`` (migration 0031) under the first 32 hex of the SHA-256 of the 800 px JPEG.

The URLs name that hash (``/media/dishes/<hash>.jpg``, ``/media/dishes/<hash>-200.jpg``), so a
browser may cache them for a year: a new photo is a new URL. They pass the photo-URL rule of
cloud/domain/formats.py (``/media/...``)."""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

import psycopg
from PIL import Image, ImageOps

from cloud.domain.errors import Invalid

Conn = psycopg.Connection[Any]
MAX_BYTES = 8 * 1024 * 1024  # a phone's photo is 2-6 MB
MAX_PIXELS = 50_000_000  # decoding more would take ~150 MB and seconds (a decompression bomb)
FULL_SIDE = 800
THUMB_SIDE = 200
FORMATS = ("JPEG", "PNG", "WEBP")
PREFIX = "/media/dishes/"
_NAME_RE = re.compile(r"([0-9a-f]{32})(-200)?\.jpg")

# The refusals, one line each: the console shows them translated (cloud/console/menu_text.py).
TOO_BIG = "the photo is larger than 8 MB"
EMPTY = "the photo is empty"
NOT_AN_IMAGE = "the file is not a JPEG, PNG or WebP image"
TOO_MANY_PIXELS = "the photo has more than 50 million pixels"
BROKEN = "the image could not be decoded (damaged or cut short)"


@dataclass(frozen=True)
class Prepared:
    key: str  # 32 hex
    full: bytes
    thumb: bytes
    width: int
    height: int


def _jpeg(img: Image.Image, side: int, quality: int) -> bytes:
    copy = img.copy()
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # no exif=, icc_profile= or xmp= arguments: the file carries pixels only
    copy.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
    return out.getvalue()


def _flat(img: Image.Image) -> Image.Image:
    """RGB; transparency (PNG, WebP) on white, as the page shows it."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img.convert("RGB")


def prepare(data: bytes) -> Prepared:
    """The stored forms of an uploaded photo, or Invalid("photo", one of the messages above)."""
    if len(data) > MAX_BYTES:
        raise Invalid("photo", TOO_BIG)
    if not data:
        raise Invalid("photo", EMPTY)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            if img.width * img.height > MAX_PIXELS:
                raise Invalid("photo", TOO_MANY_PIXELS)
            img.load()  # decodes every pixel: a truncated or corrupt file fails here
    except Invalid:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise Invalid("photo", TOO_MANY_PIXELS) from None
    except Image.UnidentifiedImageError:
        raise Invalid("photo", NOT_AN_IMAGE) from None
    except (OSError, ValueError, SyntaxError, EOFError):
        raise Invalid("photo", BROKEN) from None
    upright = _flat(ImageOps.exif_transpose(img))
    full = _jpeg(upright, FULL_SIDE, 85)
    thumb = _jpeg(upright, THUMB_SIDE, 80)
    width, height = Image.open(io.BytesIO(full)).size
    return Prepared(hashlib.sha256(full).hexdigest()[:32], full, thumb, width, height)


def store(conn: Conn, school: str, user_id: int | None, photo: Prepared) -> str:
    """Keep the photo (the same bytes again are kept once) and return its URL."""
    conn.execute(
        "INSERT INTO dish_photos (key, school_id, full_jpeg, thumb_jpeg, width, height,"
        " uploaded_by) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
        (photo.key, school, photo.full, photo.thumb, photo.width, photo.height, user_id),
    )
    return f"{PREFIX}{photo.key}.jpg"


def thumb_url(photo_url: str | None) -> str | None:
    """The 200 px thumbnail of one of our photos; another (https) photo URL as it is."""
    if photo_url and photo_url.startswith(PREFIX) and photo_url.endswith(".jpg"):
        name = photo_url[len(PREFIX) :]
        if _NAME_RE.fullmatch(name) and not name.endswith("-200.jpg"):
            return f"{PREFIX}{name[:-4]}-200.jpg"
    return photo_url


def load(conn: Conn, name: str) -> bytes | None:
    """The JPEG named ``<key>.jpg`` (800 px) or ``<key>-200.jpg`` (thumbnail), or None."""
    m = _NAME_RE.fullmatch(name)
    if m is None:
        return None
    column = "thumb_jpeg" if m.group(2) else "full_jpeg"
    row = conn.execute(
        f"SELECT {column} FROM dish_photos WHERE key = %s",  # noqa: S608 (one of two names)
        (m.group(1),),
    ).fetchone()
    return bytes(row[0]) if row else None
