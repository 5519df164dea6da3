"""Claim tokens the cloud issues never start with '-' (issue #13 item 11): `qadam flash --claim
TOKEN` must not take one for an option. About 1 in 64 tokens from secrets.token_urlsafe starts
with '-'; here the random part is made to start with it."""

from __future__ import annotations

import psycopg
import pytest
from cloud_helpers import Seed

from cloud.auth.principal import Principal
from cloud.domain.formats import check_claim_token
from cloud.provisioning import service


def test_a_claim_token_never_starts_with_a_dash(
    database_url: str, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.secrets, "token_urlsafe", lambda n: "-" + "Ab9_-" * 8 + "xy")
    actor = Principal(user_id=None, email="root@qadam.kz", role="platform_admin")
    with psycopg.connect(database_url) as conn:
        token, _ = service.create_claim_token(conn, actor, seed.device, seed.school, 3600)
    assert not token.startswith("-")
    assert check_claim_token(token) == token  # and the cloud's own rule accepts it
