"""`qadam diag`: what a board is doing, in one readable report.

    qadam diag DEVICE          the cloud's view: the board's retained status on MQTT (firmware,
                               whitelist version, journal depth, free heap, clock, last errors)
                               and the database (last event, events today, quarantined payloads)
    qadam diag --serial PORT   on the bench: the same read from the board's flash over the serial
                               raw REPL (boot counter, journal stats, whitelist header, free heap,
                               the last errors the firmware wrote to err.log, across resets); the
                               firmware is interrupted for it and soft-rebooted afterwards

Exit status: 0 report printed, 1 nothing known about the device, 3 serial port problem.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
from typing import Any

# Runs on the board (MicroPython), in the raw REPL with the flash as the working directory.
SERIAL_PROGRAM = r"""
import gc, json, os, struct
gc.collect()
_r = {}
def _txt(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return None
_r["boot"] = _txt("boot.cnt")
try:
    _d = json.loads(_txt("device.json") or "{}")
    _r["device"] = _d.get("device")
    _r["school"] = _d.get("school")
    _r["reader"] = _d.get("reader")
    _m = _d.get("mqtt") or {}
    _r["broker"] = "%s:%s" % (_m.get("host"), _m.get("port"))
except Exception as e:
    _r["device_err"] = repr(e)
try:
    with open("whitelist.bin", "rb") as f:
        _h = f.read(32)
    _mg, _fm, _rs, _v, _n, _c = struct.unpack("<4sHHIII", _h[:20])
    _r["wl"] = {"magic": _mg.decode(), "version": _v, "count": _n, "crc": "%08x" % _c,
                "size": os.stat("whitelist.bin")[6]}
except Exception as e:
    _r["wl"] = {"error": repr(e)}
for _p in ("wl.part", "whitelist.new"):
    try:
        os.stat(_p)
        _r.setdefault("leftovers", []).append(_p)
    except OSError:
        pass
try:
    from net.sync import FW_VERSION
    _r["fw"] = FW_VERSION
except Exception as e:
    _r["fw"] = None
try:
    from store.journal import Journal
    _j = Journal(".")
    _r["journal"] = {"unacked": _j.count, "segments": len(_j.segs),
                     "oldest": [_j.head[2], _j.head[3]] if _j.head else None,
                     "newest": list(_j.top), "acked_to": list(_j.cur), "corrupt": _j.bad}
    _j.close()
    del _j
except Exception as e:
    _r["journal"] = {"error": repr(e)}
# The last errors the firmware appended to err.log (net.sync Sync.error; rotated to err.old):
# "boot up where what" per line, oldest first. On flash, so they survive the reset or power cycle
# that usually comes before a board reaches the bench.
_e = []
for _p in ("err.old", "err.log"):
    try:
        with open(_p) as f:
            _e += [_l.split(" ", 3) for _l in f.read().split("\n") if _l]
    except OSError:
        pass
_r["errors"] = _e[-5:]
del _e
gc.collect()
_r["heap"] = gc.mem_free()
print("DIAG " + json.dumps(_r))
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", nargs="?", help="device id (the cloud's view)")
    p.add_argument(
        "--serial", metavar="PORT", help="read a board on the bench over its serial port"
    )
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--database-url", help="cloud database (default: QADAM_DATABASE_URL)")
    p.add_argument("--mqtt-host", help="broker host (default: QADAM_MQTT_HOST)")
    p.add_argument("--mqtt-port", type=int, help="broker port (default: QADAM_MQTT_PORT)")
    p.add_argument("--prefix", help="topic prefix (default: QADAM_TOPIC_PREFIX)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the status")
    p.add_argument("--json", action="store_true", help="print the raw report as JSON")
    p.set_defaults(func=run)


# -- the cloud's view ---------------------------------------------------------------------------
def retained_status(host: str, port: int, topic: str, timeout: float) -> dict[str, Any] | None:
    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)

    def on_connect(client, userdata, flags, reason, props):
        client.subscribe(topic, 1)

    def on_message(client, userdata, msg):
        if msg.retain and not got:
            got.append(msg.payload)
            done.set()

    c.on_connect = on_connect
    c.on_message = on_message
    c.connect(host, port)
    c.loop_start()
    try:
        done.wait(timeout)
    finally:
        c.loop_stop()
        c.disconnect()
    if not got:
        return None
    try:
        doc = json.loads(got[0])
    except ValueError:
        return {"unparseable": got[0][:200].decode("utf-8", "replace")}
    return doc if isinstance(doc, dict) else {"unparseable": repr(doc)}


def database_view(database_url: str, device: str) -> dict[str, Any]:
    import psycopg

    out: dict[str, Any] = {}
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT school_id, place, mode, reader FROM devices WHERE id = %s", (device,)
        ).fetchone()
        out["registered"] = row is not None
        if row:
            out.update(school=row[0], place=row[1], mode=row[2], reader=row[3])
        row = conn.execute(
            "SELECT max(occurred_at), max(received_at),"
            " count(*) FILTER (WHERE occurred_at >= date_trunc('day', now())),"
            " count(*) FILTER (WHERE occurred_at >= date_trunc('day', now())"
            "                  AND result = 'granted'),"
            " max(boot)"
            " FROM events WHERE device_id = %s",
            (device,),
        ).fetchone()
        assert row is not None
        out["last_event"], out["last_received"] = row[0], row[1]
        out["events_today"], out["granted_today"], out["last_boot"] = (
            int(row[2]),
            int(row[3]),
            row[4],
        )
        row = conn.execute(
            "SELECT count(*), max(received_at),"
            " (array_agg(reason ORDER BY received_at DESC))[1]"
            " FROM quarantine WHERE device_id = %s",
            (device,),
        ).fetchone()
        assert row is not None
        out["quarantined"], out["last_quarantined"], out["last_quarantine_reason"] = row
    return out


def cloud_report(
    device: str, *, database_url: str | None, host: str, port: int, prefix: str, timeout: float
) -> dict[str, Any]:
    topic = f"{prefix}/v1/dev/{device}/status"
    report: dict[str, Any] = {"device": device, "topic": topic}
    try:
        report["status"] = retained_status(host, port, topic, timeout)
    except OSError as exc:
        report["status_error"] = f"broker {host}:{port}: {exc}"
    if database_url:
        try:
            report["db"] = database_view(database_url, device)
        except Exception as exc:  # noqa: BLE001 - shown in the report
            report["db_error"] = str(exc).splitlines()[0]
    return report


def _when(value: Any) -> str:
    if value is None:
        return "never"
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    ago = dt.datetime.now(dt.UTC) - value
    return f"{value.isoformat(timespec='seconds')} ({_ago(ago.total_seconds())})"


def _ago(seconds: float) -> str:
    if seconds < 0:
        return f"{-seconds:.0f} s in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


KNOWN_STATUS = {
    "v", "online", "fw", "boot", "wl", "journal", "heap", "up", "clock", "wl_err", "err"
}  # fmt: skip


def error_lines(entries: Any, up: Any = None) -> list[str]:
    """The board's last errors, the status's "err" (protocol.md "Status"): `[up s, where, what,
    n]` each, oldest first. `up` is the uptime of the status itself (how long ago they were)."""
    if not isinstance(entries, list):
        return [f"  last errors    unreadable: {entries!r}"]
    if not entries:
        return ["  last errors    none since boot"]
    out = []
    for i, e in enumerate(entries):
        label = "last errors" if i == 0 else ""
        if not (isinstance(e, list) and len(e) == 4):
            out.append(f"  {label:<14} unreadable: {e!r}")
            continue
        at, where, what, n = e
        when = f"{at} s after boot"
        if isinstance(up, int) and isinstance(at, int) and up >= at:
            when += f", {up - at} s before this status"
        if isinstance(n, int) and n > 1:
            out.append(f"  {label:<14} {where}: {what}, {n} times (the last {when})")
        else:
            out.append(f"  {label:<14} {where}: {what} ({when})")
    return out


def format_cloud(r: dict[str, Any]) -> list[str]:
    out = [f"device {r['device']}", f"  status topic   {r['topic']}"]
    st = r.get("status")
    if "status_error" in r:
        out.append(f"  status         unavailable: {r['status_error']}")
    elif not st:
        out.append("  status         none retained (never connected, or another prefix/broker?)")
    else:
        out.append(f"  online         {'yes' if st.get('online') else 'NO (last will)'}")
        for key, label in (("fw", "firmware"), ("boot", "boot"), ("wl", "whitelist")):
            if key in st:
                out.append(f"  {label:<14} {st[key]}")
        if "journal" in st:
            out.append(f"  journal        {st['journal']} unacked (at the last status)")
        if "heap" in st:
            out.append(f"  free heap      {st['heap']} bytes")
        if "up" in st:
            out.append(f"  uptime         {st['up']} s")
        clock = st.get("clock")
        if isinstance(clock, dict):
            if clock.get("synced"):
                out.append(f"  clock          synced at {_when(clock.get('t'))}")
            else:
                out.append("  clock          NOT synced (events carry boot-relative time)")
        if "err" in st:
            out += error_lines(st["err"], st.get("up"))
        if st.get("wl_err"):
            out.append(f"  whitelist err  last update rejected: {st['wl_err']}")
        for key in sorted(set(st) - KNOWN_STATUS):
            out.append(f"  {key:<14} {st[key]}")
    if "db_error" in r:
        out.append(f"  database       unavailable: {r['db_error']}")
    db = r.get("db")
    if db is not None:
        if db["registered"]:
            out.append(f"  registered     school {db['school']}, {db['place']!r}, "
                       f"{db['mode']} ({db['reader']})")  # fmt: skip
        else:
            out.append("  registered     NO (its events go to quarantine)")
        out.append(f"  last event     {_when(db['last_event'])}")
        out.append(f"  last received  {_when(db['last_received'])}")
        out.append(f"  events today   {db['events_today']} ({db['granted_today']} granted)")
        q = f"  quarantined    {db['quarantined']}"
        if db["quarantined"]:
            q += f", last {_when(db['last_quarantined'])}: {db['last_quarantine_reason']}"
        out.append(q)
    return out


# -- the bench view ------------------------------------------------------------------------------
def serial_report(port: str, *, baud: int = 115200, timeout: float = 10.0) -> dict[str, Any]:
    from tools.flashing.board import Board

    board = Board(port, baud=baud, timeout=timeout)
    try:
        board.enter_raw_repl()
        out = board.exec(SERIAL_PROGRAM, timeout=timeout * 3)
        line = next((x for x in out.splitlines() if x.startswith("DIAG ")), None)
        if line is None:
            raise ValueError(f"unexpected answer from the board: {out[-300:]!r}")
        report = json.loads(line[5:])
        report["port"] = port
        report["restarted"] = board.soft_reset()  # back to the firmware
        return report
    finally:
        board.close()


def format_serial(r: dict[str, Any]) -> list[str]:
    out = [f"board on {r['port']}: device {r.get('device')} (school {r.get('school')}, "
           f"reader {r.get('reader')}, broker {r.get('broker')})"]  # fmt: skip
    out.append(f"  firmware       {r.get('fw') or 'unknown'}")
    out.append(f"  boot counter   {r.get('boot')}")
    wl = r.get("wl") or {}
    if "error" in wl:
        out.append(f"  whitelist      none/unreadable: {wl['error']}")
    else:
        out.append(f"  whitelist      v{wl['version']}, {wl['count']} cards, crc {wl['crc']}, "
                   f"{wl['size']} bytes ({wl['magic']})")  # fmt: skip
    if r.get("leftovers"):
        out.append(f"  leftovers      {', '.join(r['leftovers'])} (an update was interrupted)")
    j = r.get("journal") or {}
    if "error" in j:
        out.append(f"  journal        unreadable: {j['error']}")
    else:
        out.append(
            f"  journal        {j['unacked']} unacked in {j['segments']} segment(s); "
            f"oldest {j['oldest']}, newest {j['newest']}, acked to {j['acked_to']}"
        )
        if j.get("corrupt"):
            out.append(f"  CORRUPT        segments {j['corrupt']}")
    errors = r.get("errors") or []
    if not errors:
        out.append("  last errors    none in err.log")
    for i, e in enumerate(errors):
        label = "last errors" if i == 0 else ""
        if len(e) == 4:
            boot, up, where, what = e
            out.append(f"  {label:<14} {where}: {what} (boot {boot}, {up} s after boot)")
        else:
            out.append(f"  {label:<14} unreadable: {' '.join(e)!r}")
    out.append(f"  free heap      {r.get('heap')} bytes (at the REPL, firmware stopped)")
    out.append(f"  restarted      {'yes' if r.get('restarted') else 'NO: power-cycle the board'}")
    return out


def run(args: argparse.Namespace) -> int:
    if args.serial:
        from tools.flashing import FlashError

        try:
            report = serial_report(args.serial, baud=args.baud, timeout=max(args.timeout, 10.0))
        except FlashError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.code
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(report, indent=2) if args.json else "\n".join(format_serial(report)))
        return 0
    if not args.device:
        print("error: give a DEVICE id or --serial PORT", file=sys.stderr)
        return 2
    from cloud.settings import get_settings

    settings = get_settings()
    report = cloud_report(
        args.device,
        database_url=args.database_url or settings.database_url,
        host=args.mqtt_host or settings.mqtt_host,
        port=args.mqtt_port or settings.mqtt_port,
        prefix=args.prefix or settings.topic_prefix,
        timeout=args.timeout,
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print("\n".join(format_cloud(report)))
    known = report.get("status") or (report.get("db") or {}).get("registered")
    return 0 if known else 1
