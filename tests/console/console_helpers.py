"""Helpers of the console tests (importable: tests/console is on sys.path)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

# What Chromium sends with a form posted from one of the console's own pages.
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "https://testserver"}


def sign_in(client: TestClient, email: str, password: str, lang: str = "en") -> Any:
    return client.post(
        "/login",
        data={"email": email, "password": password, "next": "/"},
        headers={**SAME_ORIGIN, "Accept-Language": lang},
        follow_redirects=False,
    )
