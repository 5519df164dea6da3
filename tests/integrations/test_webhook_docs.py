"""docs/integrations.md's receiver example, run as written: it accepts a signed request
and refuses a stale, a forged or an altered one."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from cloud.webhooks import signing

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"


def _example() -> dict[str, Any]:
    code = re.search(r"## A receiver in Python.*?```python\n(.*?)```", DOC.read_text(), re.S)
    assert code is not None
    ns: dict[str, Any] = {"__name__": "receiver_example"}
    exec(compile(code.group(1), str(DOC), "exec"), ns)  # noqa: S102 (our own document)
    return ns


def test_the_documented_receiver_checks_signature_window_and_id() -> None:
    ns = _example()
    secret = signing.new_secret()
    ns["SECRET"] = secret
    body = json.dumps({"id": "wh:1:x", "events": [{"type": "meal"}]}).encode()
    now = int(time.time())

    def headers(ts: int, sig: str) -> dict[str, str]:
        return {"Qadam-Timestamp": str(ts), "Qadam-Signature": sig, "Qadam-Webhook-Id": "wh:1:x"}

    good = headers(now, signing.signature(secret, now, body))
    assert ns["valid"](good, body)
    assert signing.verify(secret, good["Qadam-Signature"], str(now), body, time.time())
    stale = now - signing.REPLAY_WINDOW_S - 5
    assert not ns["valid"](headers(stale, signing.signature(secret, stale, body)), body)
    assert not ns["valid"](headers(now, signing.signature("whsec_other", now, body)), body)
    assert not ns["valid"](good, body.replace(b"meal", b"pass"))  # a body changed in transit
    assert ns["WINDOW_S"] == signing.REPLAY_WINDOW_S
