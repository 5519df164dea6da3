"""The app's "Entry without a card" page in process (D29-J): a guardian allows the QR code and
the PIN for her child through the page (the consents are the API's, audited), sets the PIN, sees
the code the board verifies; the student sees her own code but cannot consent or set a PIN;
nobody sees another pupil's code; once the consent is withdrawn the code is gone."""

from __future__ import annotations

import re
import time

import psycopg
from api_world import PASSWORD, World
from fastapi.testclient import TestClient

from cloud.altid import keys

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "https://testserver"}


def _sign_in(client: TestClient, email: str) -> None:
    r = client.post("/app/en/login", data={"email": email, "password": PASSWORD},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text


def _code(html: str) -> str:
    m = re.search(r'data-code="([^"]+)"', html)
    assert m, html
    return m.group(1)


def test_a_guardian_allows_the_qr_and_the_pin_and_sees_the_code(
    client: TestClient, world: World, database_url: str
) -> None:
    alice = world.ids["alice"]
    _sign_in(client, "mum@qadam.kz")
    page = client.get(f"/app/en/entry?child={alice}")
    assert page.status_code == 200 and "Entry without a card" in page.text
    assert "data-code" not in page.text and 'id="allow-qr"' in page.text
    assert client.get(f"/app/en/entry/code?child={alice}").status_code == 404  # no consent yet

    r = client.post("/app/en/entry/consent", data={"child": alice, "method": "qr"},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and "saved=qr" in r.headers["location"]
    page = client.get(f"/app/en/entry?child={alice}")
    code = _code(page.text)
    with psycopg.connect(database_url) as conn:
        site = bytes(conn.execute("SELECT site_key FROM schools WHERE id = 's1'").fetchone()[0])
        audited = conn.execute(
            "SELECT count(*) FROM audit_log WHERE entity = 'consents' AND action = 'create'"
        ).fetchone()
    assert code in {keys.qr_text(site, alice, time.time() + d)[0] for d in (-2, 0)}
    assert audited == (1,)
    assert "<svg" in page.text and "Hold the screen to the scanner" in page.text
    fragment = client.get(f"/app/en/entry/code?child={alice}")
    assert fragment.status_code == 200 and "data-code" in fragment.text
    assert fragment.headers["Cache-Control"] == "no-store"

    # the PIN: allowed, then set (twice the same), refused when short or different
    client.post("/app/en/entry/consent", data={"child": alice, "method": "pin"},
                headers=SAME_ORIGIN)  # fmt: skip
    r = client.post("/app/en/entry/pin", data={"child": alice, "pin": "12", "again": "12"},
                    headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 422 and "A PIN is 4 to 8 digits." in r.text
    r = client.post("/app/en/entry/pin", data={"child": alice, "pin": "2468", "again": "2469"},
                    headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 422 and "The two PINs differ." in r.text
    r = client.post("/app/en/entry/pin", data={"child": alice, "pin": "2468", "again": "2468"},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and "saved=pinset" in r.headers["location"]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT pin_key FROM altid_pins WHERE person_id = %s", (alice,))
        assert stored.fetchone() == (keys.pin_key(site, alice, "2468").hex(),)
    assert "allowed, PIN set" in client.get(f"/app/en/entry?child={alice}").text

    # withdrawn on the Settings page: no code any more
    with psycopg.connect(database_url) as conn:
        qr = conn.execute(
            "SELECT id FROM consents WHERE person_id = %s AND method = 'qr'", (alice,)
        ).fetchone()
    assert qr is not None
    r = client.post(f"/app/en/consents/{qr[0]}/withdraw", data={"child": alice},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    assert client.get(f"/app/en/entry/code?child={alice}").status_code == 404
    assert "data-code" not in client.get(f"/app/en/entry?child={alice}").text


def test_the_student_sees_her_own_code_only_and_others_nothing(
    client: TestClient, world: World, database_url: str
) -> None:
    alice, amir = world.ids["alice"], world.ids["amir"]
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO consents (person_id, method, granted_by) VALUES (%s, 'qr', %s)",
            (alice, world.users["guardian"]),
        )
    _sign_in(client, "alice@s1.pupil")
    page = client.get("/app/en/entry")
    assert page.status_code == 200 and "data-code" in page.text
    assert 'id="allow-qr"' not in page.text and 'id="save-pin"' not in page.text
    # a student cannot consent or set a PIN (guardians only), nor see another pupil
    r = client.post("/app/en/entry/consent", data={"child": alice, "method": "pin"},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code in (303, 401, 403) and "saved" not in r.headers.get("location", "")
    assert client.get(f"/app/en/entry/code?child={amir}").status_code == 404
    assert client.get(f"/app/en/entry?child={amir}").status_code == 404
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM consents WHERE method = 'pin'").fetchone() == (0,)
