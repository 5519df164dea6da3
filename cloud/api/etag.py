"""Conditional GETs for the app's hot reads (issue #19): the child's feed and the day's menu.

The answer's JSON is made once (pydantic, in Rust) and its hash is the ETag; a client that sends
it back in If-None-Match gets 304 without a body. The queries still run (a tap may have come in
or been clock-corrected since: the database is the only one that knows), but the response is
neither serialised nor sent again, which is most of a small read's cost in this process.
``private, no-cache``: the parent's device keeps it and revalidates each time; no shared cache
may keep a child's data.
"""

from __future__ import annotations

import hashlib

from fastapi import Request, Response

CACHE_CONTROL = "private, no-cache"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """RFC 9110 13.1.2: ``*`` or any listed tag, compared weakly (W/ ignored)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == tag for t in if_none_match.split(","))


def json_response(request: Request, body: bytes) -> Response:
    """``body`` (JSON) with its ETag, or 304 if the client already has it."""
    tag = etag_of(body)
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL, "Vary": "Authorization, Cookie"}
    if matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
