"""The VAPID ``aud`` claim is the push service's origin as RFC 8292 §2 / RFC 6454 define it
(issue #16): lower-case scheme and host, the default port dropped, other ports kept."""

from __future__ import annotations

import base64
import json

import pytest

from cloud.push.webpush import VapidKey, origin


@pytest.mark.parametrize(
    ("endpoint", "aud"),
    [
        ("https://fcm.googleapis.com/fcm/send/x", "https://fcm.googleapis.com"),
        ("https://fcm.googleapis.com:443/fcm/send/x", "https://fcm.googleapis.com"),
        (
            "HTTPS://Updates.Push.Services.Mozilla.COM/wpush/v2/x",
            "https://updates.push.services.mozilla.com",
        ),
        ("https://push.example:8443/x", "https://push.example:8443"),
        ("http://127.0.0.1:80/push/1", "http://127.0.0.1"),
        ("http://127.0.0.1:8080/push/1", "http://127.0.0.1:8080"),
        ("https://user:pw@push.example/x", "https://push.example"),
        ("https://[::1]:443/x", "https://[::1]"),
    ],
)
def test_origin(endpoint: str, aud: str) -> None:
    assert origin(endpoint) == aud


def test_the_signed_claim_carries_the_origin() -> None:
    key = VapidKey(VapidKey.generate_pem(), "mailto:ops@qadam.kz")
    header = key.authorization("https://FCM.googleapis.com:443/fcm/send/abc", now=1_800_000_000)
    token = header.split("t=", 1)[1].split(",", 1)[0]
    body = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert claims["aud"] == "https://fcm.googleapis.com"
