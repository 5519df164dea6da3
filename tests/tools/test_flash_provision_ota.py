"""The release key reaches the board's device file at provisioning (docs/ota.md): the cloud's
answer carries ``ota_pub`` (its QADAM_OTA_PUBLIC_KEY), `qadam flash --cloud` writes it into
device.json, and a malformed one writes nothing."""

from __future__ import annotations

import json

import pytest

from tests.tools.test_flash_provision import ANSWER
from tools.flashing import EXIT_CLOUD, FlashError, provision

PUB = "73" * 32


def test_ota_pub_goes_into_the_device_file() -> None:
    p = provision._parse("gate-1", json.dumps({**ANSWER, "ota_pub": PUB}).encode())
    assert provision.device_document({"ota_pub": "00" * 32}, p)["ota_pub"] == PUB
    # An older cloud (or one without a release key) answers none: the board takes no updates.
    p = provision._parse("gate-1", json.dumps({**ANSWER, "ota_pub": None}).encode())
    assert "ota_pub" not in provision.device_document(None, p)


def test_malformed_ota_pub_writes_nothing() -> None:
    with pytest.raises(FlashError) as e:
        provision._parse("gate-1", json.dumps({**ANSWER, "ota_pub": "xyz"}).encode())
    assert e.value.code == EXIT_CLOUD and "ota_pub is malformed" in str(e.value)
