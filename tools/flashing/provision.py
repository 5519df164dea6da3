"""`qadam flash --cloud URL --claim TOKEN`: the technician tool trades the board's claim token for
its MQTT credentials (POST {URL}/api/v1/provision, docs/provisioning.md) and builds the board's
device.json from the answer. The board has no HTTP client of its own.

The password is never printed: `describe()` masks it and errors quote only the cloud's `detail`.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from tools.flashing import EXIT_CLAIM_REFUSED, EXIT_CLOUD, EXIT_CONFIG, FlashError

PROVISION_PATH = "/api/v1/provision"
DEVICE_FILE = "device.json"
CA_FILE = "ca.pem"  # device.json mqtt.ca: the CA the board verifies the broker with
DEFAULT_KEEPALIVE = 30  # firmware/net/link.py's default


def check_url(url: str) -> str:
    """The cloud's base URL, without a trailing slash; FlashError (exit 1) when it is no
    http(s) URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FlashError(f"--cloud {url}: expected http(s)://HOST[:PORT]", EXIT_CONFIG)
    return url.rstrip("/")


def insecure(url: str) -> bool:
    """Plain http to a host that is not this machine: the password would cross the network in
    clear."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Provisioned:
    device: str
    school: str
    site_key: str
    host: str
    port: int
    prefix: str
    user: str
    password: str
    acl: bool
    ack_key: str = ""  # hex; "": an older cloud without ack keys (protocol.md "Ack")
    boot_floor: int = 0  # the newest boot the cloud holds for the device (protocol.md)
    ota_pub: str = ""  # hex; the release key the board checks OTA images with (docs/ota.md)
    # What only the cloud knows of the board's setting-up (docs/provisioning.md, D27-C); an
    # older cloud answers none of it: plain MQTT, no NTP, no offset.
    tls: bool = False
    ca_pem: str = ""  # the CA the board verifies the broker with: written as ca.pem
    server_hostname: str = ""  # the name the broker's certificate is for
    ntp: tuple[str, ...] = ()
    timezone: str = ""
    tz_offset_min: int | None = None
    mode: str = ""

    def describe(self) -> str:
        tls = f"TLS verifying {self.server_hostname or self.host}" if self.tls else "plain MQTT"
        tz = f", {self.timezone} UTC{self.tz_offset_min / 60:+g}" if self.timezone else ""
        return (
            f"device {self.device}, school {self.school}, broker {self.host}:{self.port} ({tls}), "
            f"prefix {self.prefix}, user {self.user}, password ******** "
            f"({'per-board ACL' if self.acl else 'open broker: no ACL'}), "
            f"NTP {', '.join(self.ntp) or 'none'}{tz}"
        )


def _detail(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace").strip()
    d = doc.get("detail") if isinstance(doc, dict) else None
    return d if isinstance(d, str) else json.dumps(d)[:300]


def _parse(device: str, raw: bytes) -> Provisioned:
    try:
        doc = json.loads(raw)
        m = doc["mqtt"]
        p = Provisioned(
            device=str(doc["device"]),
            school=str(doc["school"]),
            site_key=str(doc["site_key"]),
            host=str(m["host"]),
            port=int(m["port"]),
            prefix=str(m["prefix"]),
            user=str(m["user"]),
            password=str(m["password"]),
            acl=bool(m.get("acl", False)),
            ack_key=str(doc.get("ack_key") or ""),
            boot_floor=int(doc.get("boot_floor") or 0),
            ota_pub=str(doc.get("ota_pub") or ""),
            tls=m.get("tls") is True,
            ca_pem=str(m.get("ca_pem") or ""),
            server_hostname=str(m.get("server_hostname") or ""),
            ntp=tuple(str(s) for s in doc.get("ntp") or ()),
            timezone=str(doc.get("timezone") or ""),
            tz_offset_min=None if doc.get("tz_offset_min") is None else int(doc["tz_offset_min"]),
            mode=str(doc.get("mode") or ""),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise FlashError(
            f"the cloud's provisioning answer is not what this tool understands ({exc!r}); "
            "nothing was written to the board",
            EXIT_CLOUD,
        ) from None
    if p.device != device:
        raise FlashError(
            f"the cloud provisioned {p.device!r}, not {device!r}; nothing was written to the board",
            EXIT_CLOUD,
        )
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", p.site_key):
        raise FlashError("the cloud's site_key is not hex; nothing was written", EXIT_CLOUD)
    if p.ack_key and not re.fullmatch(r"[0-9a-f]{64}", p.ack_key) or p.boot_floor < 0:
        raise FlashError("the cloud's ack_key or boot_floor is malformed; nothing was written",
                         EXIT_CLOUD)  # fmt: skip
    if p.ota_pub and not re.fullmatch(r"[0-9a-f]{64}", p.ota_pub):
        raise FlashError("the cloud's ota_pub is malformed; nothing was written", EXIT_CLOUD)
    bad = _check_setup(p)
    if bad:
        raise FlashError(f"the cloud's answer is unusable: {bad}; nothing was written to the "
                         "board (the cloud's settings need fixing)", EXIT_CLOUD)  # fmt: skip
    return p


def _check_setup(p: Provisioned) -> str:
    """What is wrong with the TLS, NTP, time zone and mode of an answer ("": nothing)."""
    if p.tls:
        if not p.ca_pem:
            return "TLS without a CA certificate"
        try:
            from cryptography import x509

            x509.load_pem_x509_certificates(p.ca_pem.encode())
        except (ValueError, UnicodeEncodeError):
            return "its CA certificate (mqtt.ca_pem) does not parse as PEM"
        if p.server_hostname and not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", p.server_hostname):
            return "mqtt.server_hostname is not a host name"
    if any(not re.fullmatch(r"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?", s) for s in p.ntp):
        return "an NTP server is not HOST or HOST:PORT"
    if p.tz_offset_min is not None and not -720 <= p.tz_offset_min <= 840:
        return f"tz_offset_min {p.tz_offset_min} is out of range"
    if p.mode not in ("", "door", "turnstile", "canteen"):
        return f"unknown mode {p.mode!r}"
    return ""


def provision(base_url: str, device: str, token: str, timeout: float = 15.0) -> Provisioned:
    """POST {base_url}/api/v1/provision {"device", "token"}. The token is used by a 200 answer;
    any FlashError here means nothing was written to the board (and, except for a lost answer,
    the token is still unused)."""
    url = base_url + PROVISION_PATH
    body = json.dumps({"device": device, "token": token}).encode()
    req = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = _detail(exc.read())
        if exc.code in (403, 404, 422):
            why = {
                403: "the claim token is wrong, used, expired or another device's (ask for a "
                "new one: POST /api/v1/devices/{id}/claim-token)",
                404: f"no provisioning API at {url} (is --cloud the right URL?)",
                422: "the cloud rejected the request (device id or token malformed)",
            }[exc.code]
            raise FlashError(
                f"--cloud: {why}: HTTP {exc.code} {detail}; nothing was written to the board",
                EXIT_CLAIM_REFUSED,
            ) from None
        raise FlashError(
            f"--cloud: {url} answered HTTP {exc.code} {detail}; the claim token is still unused, "
            "nothing was written to the board: try again later",
            EXIT_CLOUD,
        ) from None
    except OSError as exc:  # URLError, refused, timeout (a lost answer may have used the token)
        reason = getattr(exc, "reason", exc)
        raise FlashError(
            f"--cloud: cannot reach {url}: {reason}; nothing was written to the board (check the "
            "URL and the network)",
            EXIT_CLOUD,
        ) from None
    return _parse(device, raw)


def device_document(
    template: dict[str, Any] | None, p: Provisioned, wifi: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """device.json: the template (if any) with the cloud's device, school, site key, broker
    account, TLS, NTP servers and time zone offset over it, and the Wi-Fi networks given to the
    flasher (``wifi``; else the template's); the template's other keys (clock_synced, relay_ms,
    mqtt.keepalive, ntp.every_s, mode, ...) stay."""
    doc: dict[str, Any] = dict(template or {})
    mqtt = dict(doc.get("mqtt") or {})
    mqtt.update(host=p.host, port=p.port, prefix=p.prefix, user=p.user, password=p.password)
    mqtt.setdefault("keepalive", DEFAULT_KEEPALIVE)
    for k in ("tls", "ca", "server_hostname"):
        mqtt.pop(k, None)  # the cloud says whether its broker takes TLS, not the template
    if p.tls:  # firmware/net/link.py: verified against the CA file, no fallback (D25-K)
        mqtt.update(tls=True, ca=CA_FILE, server_hostname=p.server_hostname or p.host)
    doc.update(device=p.device, school=p.school, site_key=p.site_key, mqtt=mqtt)
    if p.ntp:
        ntp = doc.get("ntp")
        doc["ntp"] = {**(ntp if isinstance(ntp, dict) else {}), "servers": list(p.ntp)}
    if p.tz_offset_min is not None:
        doc["tz_offset_min"] = p.tz_offset_min
    if p.mode:
        doc.setdefault("mode", p.mode)  # a template's mode is the technician's choice
    if wifi:
        doc["wifi"] = wifi
    doc.pop("ack_key", None)  # a template's key is not this board's
    if p.ack_key:
        doc["ack_key"] = p.ack_key  # acks without its mac are ignored (protocol.md "Ack")
    if p.boot_floor:
        doc["boot_floor"] = p.boot_floor  # boots start above it (protocol.md "Boot floor")
    if p.ota_pub:
        doc["ota_pub"] = p.ota_pub  # OTA images are checked with it (docs/ota.md)
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def device_files(
    template: dict[str, Any] | None, p: Provisioned, wifi: list[dict[str, str]] | None = None
) -> dict[str, bytes]:
    """The files the board gets from the cloud's answer, by their name on the board:
    device.json, and ca.pem for a TLS broker. What `qadam flash --cloud` copies and verifies
    (and what tests put into a virtual board's flash)."""
    files = {DEVICE_FILE: encode(device_document(template, p, wifi))}
    if p.tls:
        files[CA_FILE] = p.ca_pem.encode()
    return files
