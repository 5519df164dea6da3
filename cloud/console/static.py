"""The console's own and vendored static files, linked with ``?_hash=`` (the first 12 hex of
their SHA-256), as Datasette does: a page always names the current bytes, so the files can be
cached for a year and no bundler is needed."""

from __future__ import annotations

import gzip
import hashlib
import logging
from functools import lru_cache
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, Response

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("qadam.console")
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".woff2": "font/woff2",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
YEAR = 365 * 24 * 3600
DAY = 24 * 3600
_COMPRESS = {".js", ".css", ".svg"}  # fonts are compressed already


@lru_cache(maxsize=256)
def _digest(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _file(name: str) -> Path | None:
    path = (STATIC / name).resolve()
    if STATIC not in path.parents or not path.is_file() or path.suffix not in _TYPES:
        return None
    return path


def url(name: str) -> str:
    path = _file(name)
    if path is None:  # a vendor file ./dev did not copy: the link says so instead of a 500
        _missing(name)
        return f"/static/{name}?_hash=missing"
    return f"/static/{name}?_hash={_digest(path, path.stat().st_mtime_ns)}"


@lru_cache(maxsize=64)
def _missing(name: str) -> None:
    """Said once per file: the pages work without it only in part (no htmx, no API docs)."""
    log.warning("console file static/%s is missing: run ./dev (npm ci, cloud.console.vendor)", name)


def serve(name: str, request: Request) -> Response:
    path = _file(name)
    if path is None:
        raise HTTPException(status_code=404, detail="no such file")
    current = _digest(path, path.stat().st_mtime_ns)
    if request.query_params.get("_hash") == current:
        cache = f"public, max-age={YEAR}, immutable"
    elif path.suffix == ".woff2":
        cache = f"public, max-age={DAY}"  # named by console.css without a hash (same glyphs)
    else:
        cache = "no-cache"
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff",
               "Vary": "Accept-Encoding"}  # fmt: skip
    if path.suffix in _COMPRESS and "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = _gzipped(path, path.stat().st_mtime_ns)
        return Response(body, media_type=_TYPES[path.suffix], headers=headers)
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=headers)


@lru_cache(maxsize=64)
def _gzipped(path: Path, mtime_ns: int) -> bytes:
    """Compressed once per file version (htmx 37 KB -> 13 KB; swagger-ui 1.8 MB -> 0.5 MB)."""
    return gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)
