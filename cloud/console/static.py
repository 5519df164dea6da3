"""The console's own and vendored static files, linked with ``?_hash=`` (the first 12 hex of
their SHA-256), as Datasette does: a page always names the current bytes, so the files can be
cached for a year and no bundler is needed."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, Response

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".woff2": "font/woff2",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
YEAR = 365 * 24 * 3600


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
        return f"/static/{name}?_hash=missing"
    return f"/static/{name}?_hash={_digest(path, path.stat().st_mtime_ns)}"


def serve(name: str, request: Request) -> Response:
    path = _file(name)
    if path is None:
        raise HTTPException(status_code=404, detail="no such file")
    current = _digest(path, path.stat().st_mtime_ns)
    immutable = request.query_params.get("_hash") == current
    cache = f"public, max-age={YEAR}, immutable" if immutable else "no-cache"
    return FileResponse(
        path,
        media_type=_TYPES[path.suffix],
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )
