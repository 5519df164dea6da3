"""The board's way onto the network, checked offline before anything touches it (issue #14 item 4,
D27-C): Wi-Fi networks from `--wifi SSID=KEY` (repeatable, in order of preference) or
`--wifi-file FILE` (a JSON list of {"ssid", "key"}), written as device.json "wifi"
(firmware/net/netup.py tries them in order); or the Ethernet PHY of a board config with "eth".

A real board (hal other than sim) that gets its device file from this tool and has neither would
never come online: refused before the board is touched. Keys are never printed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from tools.flashing import EXIT_CONFIG, FlashError

MAX_NETWORKS = 8  # each one the board cannot join costs it 15 s at boot (net/netup.py)
_HEX64 = re.compile(r"[0-9A-Fa-f]{64}")


def check_network(ssid: Any, key: Any, where: str) -> list[str]:
    """What is wrong with one network (empty: nothing). SSID: 1-32 bytes (802.11); key: empty
    (an open network), a WPA/WPA2 passphrase of 8-63 printable ASCII characters, or a 64-hex-digit
    pre-shared key. The messages never quote the key."""
    bad = []
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        n = len(ssid.encode()) if isinstance(ssid, str) else 0
        bad.append(f"{where}: the SSID must be 1-32 bytes (UTF-8), not {n}")
    if not isinstance(key, str):
        bad.append(f"{where}: the key must be a string ('' for an open network)")
    elif key and not (_HEX64.fullmatch(key) or (
        8 <= len(key) <= 63 and all(" " <= c <= "~" for c in key)
    )):  # fmt: skip
        bad.append(
            f"{where}: the key ({len(key)} characters) must be 8-63 printable ASCII characters "
            "(WPA/WPA2 passphrase) or 64 hex digits"
        )
    return bad


def check_wifi_list(doc: Any, where: str) -> list[str]:
    """What is wrong with a device.json "wifi" value (or a --wifi-file's content)."""
    if not isinstance(doc, list) or not doc:
        return [f'{where}: a non-empty JSON list of {{"ssid": ..., "key": ...}}']
    if len(doc) > MAX_NETWORKS:
        return [f"{where}: at most {MAX_NETWORKS} networks, not {len(doc)}"]
    bad: list[str] = []
    seen: set[str] = set()
    for i, net in enumerate(doc, 1):
        at = f"{where} #{i}"
        if not isinstance(net, dict) or set(net) - {"ssid", "key"} or "ssid" not in net:
            bad.append(f'{at}: an object with "ssid" and "key" only')
            continue
        bad += check_network(net["ssid"], net.get("key", ""), at)
        if net["ssid"] in seen:
            bad.append(f"{at}: SSID {net['ssid']!r} given twice")
        seen.add(net["ssid"])
    return bad


def parse_wifi_arg(arg: str, i: int) -> dict[str, str]:
    """`--wifi SSID=KEY`, split at the first '=': the key may hold '=' (generated passphrases
    do), an SSID with '=' goes in a --wifi-file."""
    if "=" not in arg:
        raise FlashError(
            f"--wifi #{i}: expected SSID=KEY (SSID= for an open network); nothing was touched",
            EXIT_CONFIG,
        )
    ssid, _, key = arg.partition("=")
    return {"ssid": ssid, "key": key}


def wifi_from_args(args: Any) -> list[dict[str, str]] | None:
    """The networks of --wifi / --wifi-file, checked; None when neither was given. Warns (on
    stderr) for an open network: anyone in range can see the board's traffic there (TLS still
    protects the broker connection)."""
    given = getattr(args, "wifi", None) or []
    path = getattr(args, "wifi_file", None)
    if not given and path is None:
        return None
    if given and path is not None:
        raise FlashError("--wifi and --wifi-file: give the networks one way", EXIT_CONFIG)
    if path is not None:
        try:
            nets = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
            raise FlashError(f"--wifi-file {path}: cannot read it ({why})", EXIT_CONFIG) from None
        where = f"--wifi-file {path}"
    else:
        nets = [parse_wifi_arg(a, i) for i, a in enumerate(given, 1)]
        where = "--wifi"
    bad = check_wifi_list(nets, where)
    if bad:
        raise FlashError(
            "Wi-Fi networks are invalid, nothing was touched:\n" + "\n".join(f"  {b}" for b in bad),
            EXIT_CONFIG,
        )
    for net in nets:
        if not net.get("key"):
            print(
                f"WARNING: Wi-Fi network {net['ssid']!r} is OPEN (no key): anyone in range sees "
                "and can imitate it; use a WPA2 network for the school's boards",
                file=sys.stderr,
            )
    return [{"ssid": n["ssid"], "key": n.get("key", "")} for n in nets]


def describe(nets: list[dict[str, str]]) -> str:
    """For the log: the SSIDs in order, never the keys."""
    return ", ".join(f"{n['ssid']!r}" + ("" if n["key"] else " (open)") for n in nets)


def require_network(board: dict[str, Any] | None, wifi: Any, cloud: bool) -> None:
    """A real board config that would get a device file with no way onto the network: refused.
    ``board``: the board config's document (None: no board config given, the board keeps its
    own); ``wifi``: the device file's "wifi" (from the options or the template); ``cloud``: the
    device file comes from --cloud (else from a --config device.json)."""
    if board is None or board.get("hal") in (None, "sim") or board.get("eth") or wifi:
        return
    how = (
        "with --wifi SSID=KEY (repeat it for more, in order of preference) or --wifi-file FILE"
        if cloud
        else 'as "wifi": [{"ssid": ..., "key": ...}] in the device.json'
    )
    raise FlashError(
        f'board config {board.get("name") or "board.json"} has no Ethernet ("eth") and no '
        f"Wi-Fi network was given: the board would never come online. Give its school's network "
        f"{how}; nothing was touched",
        EXIT_CONFIG,
    )
