"""`qadam flash --cloud URL --claim TOKEN` without a board: the offline checks, the dry run (which
never calls the cloud), device.json built from the cloud's answer over a template, and the
cloud's answers (403, 5xx, unreachable, garbage) mapped to their exit codes, against a small
local HTTP server. The run against a virtual board: test_flash_provision_e2e.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tools import flash
from tools.cli import main
from tools.flashing import EXIT_CLAIM_REFUSED, EXIT_CLOUD, EXIT_CONFIG, FlashError, provision

FAKE_PORT = "/dev/ttyFAKE0"
ANSWER = {
    "device": "gate-1",
    "school": "s1",
    "site_key": "00ff",
    "mqtt": {"host": "mq.example", "port": 8883, "prefix": "school9", "user": "gate-1",
             "password": "s3cret-pw-do-not-print", "acl": True},
}  # fmt: skip

TOKEN = "cT0ken-for-tests-0123"  # the cloud's claim-token format (16-128 of A-Za-z0-9_-)


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    def build(dest, root=flash.FIRMWARE):
        files = [dest / "main.py", dest / "app" / "door.mpy"]
        for f in files:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"M\x06\x00\x1f" if f.suffix == ".mpy" else b"")
        return files

    monkeypatch.setattr(flash, "build_bundle", build)
    return tmp_path / "bundle"


@pytest.fixture
def no_cloud(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the cloud was called")

    monkeypatch.setattr(provision.urllib.request, "urlopen", refuse)


@pytest.fixture
def server():
    """A stand-in cloud: answers POST /api/v1/provision with (status, body) from `reply`."""
    reply: dict = {"status": 200, "body": json.dumps(ANSWER).encode(), "got": []}

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers["Content-Length"])
            reply["got"].append((self.path, json.loads(self.rfile.read(n))))
            self.send_response(reply["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply["body"])

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    reply["url"] = f"http://127.0.0.1:{srv.server_address[1]}"
    yield reply
    srv.shutdown()
    srv.server_close()


def _write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_dry_run_plans_the_exchange_and_calls_no_cloud(tmp_path, capsys, fake_build, no_cloud):
    template = _write(tmp_path / "device.json", {"clock_synced": True})  # no device, no site_key
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--config", str(template), "--cloud", "https://cloud.example/",
               "--claim", "Zq9-claim-token-0123", "--device", "gate-1",
               "--wait-online"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (
        "provision: POST https://cloud.example/api/v1/provision as device gate-1 with the claim "
        "token (not called: dry run); the answer -> :device.json merged over the given device.json"
    ) in out
    assert "claim.json" not in out and "-> :device.json (" not in out and "Zq9" not in out
    assert "PREFIX/v1/dev/gate-1/status at the broker the cloud names" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cloud", "http://c.example"], "--cloud needs the claim token: --claim=TOKEN"),
        (["--cloud", "ftp://c", "--claim", TOKEN, "--device", "g"], "expected http(s)://HOST"),
        (["--claim", TOKEN, "--device", "g"], "--device is only used with --cloud"),
        (["--cloud", "http://c", "--claim", TOKEN, "--device", "a/b"], "--device 'a/b': 1-64"),
        (["--cloud", "http://c", "--claim", TOKEN], "--cloud needs the device id: --device ID"),
    ],
)
def test_bad_cloud_arguments_are_refused_offline(argv, message, capsys, no_cloud, fake_build):
    rc = main(["flash", "--port", FAKE_PORT, "--dry-run", *argv])
    assert rc == EXIT_CONFIG == 1
    assert message in capsys.readouterr().err


def test_template_naming_another_device_is_refused(tmp_path, capsys, no_cloud, fake_build):
    template = _write(tmp_path / "device.json", {"device": "gate-2"})
    rc = main(["flash", "--port", FAKE_PORT, "--dry-run", "--config", str(template),
               "--cloud", "http://127.0.0.1:1", "--claim", TOKEN,
               "--device", "gate-1"])  # fmt: skip
    assert rc == 1
    assert "names device 'gate-2' but --device is 'gate-1'" in capsys.readouterr().err
    # the template's device is the default --device; its mqtt block is still checked
    bad = _write(tmp_path / "device.json", {"device": "gate-1", "mqtt": {"port": "x"}})
    rc = main(["flash", "--port", FAKE_PORT, "--dry-run", "--config", str(bad),
               "--cloud", "http://127.0.0.1:1", "--claim", TOKEN])  # fmt: skip
    assert rc == 1 and "mqtt.port: must be" in capsys.readouterr().err


def test_plain_http_to_another_host_warns(tmp_path, capsys, no_cloud, fake_build):
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--cloud", "http://cloud.example", "--claim", TOKEN, "--device", "g"])  # fmt: skip
    assert rc == 0
    assert "plain http: the board's MQTT password crosses the network" in capsys.readouterr().err


def test_device_document_merges_the_answer_over_the_template():
    p = provision._parse("gate-1", json.dumps(ANSWER).encode())
    template = {"device": "gate-1", "site_key": "aa", "relay_ms": 500,
                "mqtt": {"host": "old", "keepalive": 15, "user": "x"}}  # fmt: skip
    doc = provision.device_document(template, p)
    assert doc == {
        "device": "gate-1", "school": "s1", "site_key": "00ff", "relay_ms": 500,
        "mqtt": {"host": "mq.example", "port": 8883, "prefix": "school9", "user": "gate-1",
                 "password": "s3cret-pw-do-not-print", "keepalive": 15},
    }  # fmt: skip
    assert template["mqtt"]["host"] == "old"  # the template is not changed
    assert provision.device_document(None, p)["mqtt"]["keepalive"] == 30
    assert flash._check_device(Path("device.json"), doc) == []
    assert "s3cret" not in p.describe() and "********" in p.describe()


def test_provision_posts_device_and_token(server):
    p = provision.provision(server["url"], "gate-1", "tok-123")
    assert server["got"] == [("/api/v1/provision", {"device": "gate-1", "token": "tok-123"})]
    assert (p.host, p.port, p.prefix, p.user, p.acl) == ("mq.example", 8883, "school9", "gate-1",
                                                         True)  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (403, {"detail": "invalid, used or expired claim token for this device"},
         EXIT_CLAIM_REFUSED, "the claim token is wrong, used, expired or another device's"),
        (422, {"detail": [{"loc": ["body", "token"]}]}, EXIT_CLAIM_REFUSED, "HTTP 422"),
        (404, {"detail": "Not Found"}, EXIT_CLAIM_REFUSED, "no provisioning API at"),
        (503, {"detail": "broker refused the account: x"}, EXIT_CLOUD,
         "HTTP 503 broker refused the account: x; the claim token is still unused"),
        (200, {"device": "gate-1"}, EXIT_CLOUD, "not what this tool understands"),
        (200, {**ANSWER, "device": "gate-9"}, EXIT_CLOUD, "provisioned 'gate-9', not 'gate-1'"),
    ],
)  # fmt: skip
def test_cloud_answers_map_to_exit_codes(server, status, body, code, message):
    server["status"], server["body"] = status, json.dumps(body).encode()
    with pytest.raises(FlashError) as e:
        provision.provision(server["url"], "gate-1", "tok")
    assert e.value.code == code and message in str(e.value)
    assert "nothing was written to the board" in str(e.value)


def test_unreachable_cloud_is_exit_10():
    with pytest.raises(FlashError) as e:
        provision.provision("http://127.0.0.1:9", "gate-1", "tok", timeout=2)
    assert e.value.code == EXIT_CLOUD == 10 and "cannot reach http://127.0.0.1:9" in str(e.value)
