"""Shared parts of the benchmarks: result table/JSON, a private broker, a throwaway database,
consumers as processes, and a publisher that plays many boards and times their acks."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PG_ADMIN_URL = os.environ.get("QADAM_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MOSQUITTO = "/usr/sbin/mosquitto"
CARD = "0123456789abcdef"
PUPILS = 1_000
T0 = 1_760_000_000

BENCHMARKS: dict[str, tuple[str, str]] = {
    "ingest_live": ("bench.ingest_live",
                    "one event per message through Mosquitto + ingest + PostgreSQL, acks "
                    "included; vs one INSERT per event; and the raw binary COPY limit"),
    "ingest_replay": ("bench.ingest_replay",
                      "a queued backlog of 32-event batches drained by the ingest vs the naive "
                      "consumer"),
    "ingest_latency": ("bench.ingest_latency",
                       "tap-to-commit latency (publish to ack) at 1,000 events/s"),
    "journal": ("bench.journal",
                "board journal in the MicroPython VM: append cost, bytes/event, recovery of "
                "20,000 events; vs one JSON line per event"),
    "fuzz_decoder": ("bench.fuzz_decoder",
                     "hypothesis fuzz of the decoder, 100,000 examples per strategy"),
    "meal_report": ("bench.meal_report",
                    "a district's monthly free/subsidised meal report over 2.2 M meal rows, from "
                    "the monthly rollup vs straight from meal_receipts"),
    "board_memory": ("bench.board_memory",
                     "free heap of a simulated board (door, turnstile, turnstile + anti-passback "
                     "+ schedules, firmware from a ROMFS image) after connect and after 300 taps: "
                     "a 64 KiB heap vs 100 KiB"),
    "canteen_menu": ("bench.canteen_menu",
                     "free heap of a canteen board (100 KiB) with no menu, the one-day menu and "
                     "the dated 8-day menu (D27-A), after connect and 300 taps; the menu "
                     "arriving as a config command; the canteen in the field (TLS + Wi-Fi + "
                     "NTP, two menus, taps, a reconnect) at 96 and 100 KiB (D28-I)"),
    "altid_verify": ("bench.altid_verify",
                     "a pupil's dynamic QR code verified in the MicroPython VM (64 KiB): the "
                     "board's HMAC scheme vs an Ed25519 signature; the PIN's hashing (D29-J)"),
    "whitelist_lookup": ("bench.whitelist_lookup",
                         "50,000-card whitelist lookup in the MicroPython VM (64 KiB heap): reads, "
                         "us and bytes allocated per lookup; vs a linear scan of the same file"),
    "events_list": ("bench.events_list",
                    "lists across schools (operator, district) over 2 M taps: each school's "
                    "newest merged vs one scan of the time index dropped in migration 0015"),
    "api_load": ("bench.api_load",
                 "the API at 100/1,000/2,000 connections (wrk, an app + console mix, 5,000 "
                 "pupils, 2 M taps) with the pool vs without, and the ingest's tap-to-ack "
                 "meanwhile"),
    "catchup": ("bench.catchup",
                "catch-up of 20,000 journaled events after an outage, one simulated board "
                "through Mosquitto + ingest; vs batch size 1 (500 events, scaled)"),
    "console": ("bench.console",
                "the web console's Today and live events pages (a school of 5,000 pupils, a "
                "district of 200 schools, 2 M taps): p95 server time against the API calls "
                "that fetch the same data"),
    "console_lighthouse": ("bench.console_lighthouse",
                           "Lighthouse (npm, Debian's Chromium, mobile) on the console's sign-in, "
                           "Today and live events pages: performance, accessibility, best "
                           "practices"),
    "app_feed": ("bench.app_feed",
                 "the parents' app's feed page (first and 11th page of a child, 500,000 taps): "
                 "p95 server time against GET /api/v1/events for the same 20 taps"),
    "app_lighthouse": ("bench.app_lighthouse",
                       "Lighthouse (npm, Debian's Chromium, mobile) on the parents' app's "
                       "sign-in, invitation and feed pages: performance, accessibility, best "
                       "practices"),
    "import_accounts": ("bench.import_accounts",
                        "a 10,000-pupil CSV import applied with an app account for every pupil "
                        "(the student_account column, D29-E); vs the same file without it"),
    "ota": ("bench.ota",
            "OTA transfer time of the firmware image (~84 KB, 1 KB chunks in windows of 8) to a "
            "simulated board through Mosquitto, the whole update to confirmed, Ed25519 in the "
            "VM; vs one raw MQTT publish of the same bytes"),
    "power_on": ("bench.power_on",
                 "power-on to the first acked tap of a door board with Wi-Fi, TLS and NTP as "
                 "the flasher provisions it; vs the same board on plain MQTT without bring-up"),
    "push_latency": ("bench.push_latency",
                     "a tap to its parent's phone at 1,000 taps/s: published, stored, outbox, "
                     "encrypted Web Push POST received by a local push service; vs the ingest's "
                     "tap-to-ack in the same run"),
    "ingest_cluster": ("bench.ingest_cluster",
                       "live and replay through a 3-node RabbitMQ cluster (AMQP ingest) vs "
                       "Mosquitto in the same run, and live with the leaders' node killed"),
    "push_sender": ("bench.push_sender",
                    "the sender's CPU per Web Push (encrypt, VAPID, POST from 32 threads) to a "
                    "push endpoint in another process; http.client keep-alive vs httpx.Client"),
    "retention": ("bench.retention",
                  "one month of 1M events archived (binary COPY, fsync, read back), dropped "
                  "(rehash, detach) and restored; vs the bare binary COPY out"),
    "webhook_rows": ("bench.webhook_rows",
                     "the ingest writer's time per flush (live and replay shapes) with the "
                     "webhook rows of D29-I, for a school without and with 3 subscribers; vs "
                     "the writer without the webhook part"),
}  # fmt: skip


@dataclass
class Row:
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    goal: str = ""


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def report(name: str, rows: list[Row]) -> Path:
    for r in rows:
        if r.baseline and r.ratio is None:
            r.ratio = round(r.value / r.baseline, 2)
    header = ("metric", "value", "unit", "baseline", "ratio", "goal")
    table = [header] + [
        (r.metric, _fmt(r.value), r.unit, _fmt(r.baseline), _fmt(r.ratio), r.goal) for r in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    for i, line in enumerate(table):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    print(f"\nwritten {out.relative_to(REPO)}")
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- broker -----------------------------------------------------------------------------------


BROKER_PIDS: dict[int, int] = {}  # port -> pid of the private broker on it


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used, from /proc (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def mosquitto() -> Iterator[int]:
    """A private Mosquitto with the production queue limits of deploy/mosquitto (no auth)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="qadam-bench-mq-") as d:
        conf = Path(d) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            "persistence false\nmax_queued_messages 0\nmax_inflight_messages 1000\n"
            "set_tcp_nodelay true\n"
        )
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        BROKER_PIDS[port] = proc.pid
        try:
            _wait_port(port, proc)
            yield port
        finally:
            BROKER_PIDS.pop(port, None)
            proc.terminate()
            proc.wait(10)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


# -- database ---------------------------------------------------------------------------------


@contextmanager
def database(devices: int) -> Iterator[str]:
    """A migrated throwaway database with one school, ``devices`` devices and one card."""
    from cloud.db.migrate import apply
    from cloud.domain import registry

    name = f"qadam_bench_{uuid.uuid4().hex[:10]}"
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        apply(url)
        with psycopg.connect(url) as conn:
            registry.create_school(conn, "b1", "Bench School", b"k" * 32)
            person = registry.add_person(conn, "b1", "student", "Bench Student")
            registry.add_card(conn, person, CARD)
            # the roster the taps are spread over (card_of): one school's pupils
            conn.execute(
                "INSERT INTO people (school_id, kind, full_name)"
                " SELECT 'b1', 'student', 'Pupil ' || i FROM generate_series(1, %s) i",
                (PUPILS,),
            )
            conn.execute(
                "INSERT INTO cards (card_key, person_id)"
                " SELECT lpad(to_hex(row_number() OVER (ORDER BY id) - 1), 16, '0'), id"
                " FROM people WHERE full_name LIKE 'Pupil %%'"
            )
            for d in device_ids(devices):
                registry.register_device(conn, d, "b1", d, "turnstile", "mfrc522")
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def device_ids(n: int) -> list[str]:
    return [f"bench-{i}" for i in range(n)]


def count_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
    return int(row[0]) if row else 0


# -- consumers --------------------------------------------------------------------------------


class Consumer:
    """``python -m cloud.ingest`` (kind "ingest") or ``python -m bench.naive_ingest`` ("naive")
    as a child process, configured through QADAM_* variables."""

    def __init__(self, kind: str, url: str, port: int, prefix: str, worker: int = 0,
                 **extra: str) -> None:  # fmt: skip
        module = {"ingest": "cloud.ingest", "naive": "bench.naive_ingest"}[kind]
        env = dict(os.environ, QADAM_DATABASE_URL=url, QADAM_MQTT_PORT=str(port),
                   QADAM_MQTT_HOST="127.0.0.1", QADAM_TOPIC_PREFIX=prefix,
                   QADAM_INGEST_CLIENT_ID=f"{kind}-{prefix}-{worker}",
                   QADAM_INSECURE_DEV="1",  # the bench's broker has no accounts
                   PYTHONPATH=str(REPO))  # fmt: skip
        env.update({f"QADAM_{k.upper()}": v for k, v in extra.items()})
        self.log = tempfile.NamedTemporaryFile(prefix=f"qadam-bench-{kind}-", suffix=".log",
                                               delete=False)  # fmt: skip
        self.proc = subprocess.Popen([sys.executable, "-m", module], env=env, cwd=REPO,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)  # fmt: skip

    def wait_subscribed(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"consumer exited: {self.tail()}")
            if b"subscribed" in Path(self.log.name).read_bytes():
                return
            time.sleep(0.05)
        raise TimeoutError(f"consumer did not subscribe: {self.tail()}")

    def tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        os.unlink(self.log.name)


# -- the boards -------------------------------------------------------------------------------


def card_of(seq: int) -> str:
    """The card of one of the school's PUPILS (``database`` issues them)."""
    return f"{seq * 7919 % PUPILS:016x}"


def event_bytes(seq: int, boot: int) -> bytes:
    # Taps spread over the school's pupils, as a replayed morning is: with one card for all,
    # every flush would update the same attendance row and concurrent writers would queue on
    # its lock, which no real school does.
    return (
        f'{{"boot":{boot},"seq":{seq},"t":{T0 + seq % 30000},"sync":1,"up":{seq},"kind":"tap",'
        f'"reader":"in","card":"{card_of(seq)}","result":"granted","reason":"ok"}}'
    ).encode()


def batch(device: str, boot: int, first: int, n: int) -> bytes:
    evs = b",".join(event_bytes(s, boot) for s in range(first, first + n))
    return f'{{"v":1,"dev":"{device}","boot":{boot},"events":['.encode() + evs + b"]}"


class Boards:
    """One paho connection publishing for many devices; records when each (device, boot, last)
    was sent and when its ack arrived."""

    def __init__(self, port: int, prefix: str, acks: bool = True) -> None:
        """``acks=False``: publish only (an :class:`AckSink` collects the acks)."""
        self.prefix = prefix
        self.sent: dict[tuple[str, int, int], float] = {}
        self.acked: dict[tuple[str, int, int], float] = {}
        self.events_acked = 0
        self._cond = threading.Condition()
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                        client_id=f"boards-{prefix}", protocol=mqtt.MQTTv311)  # fmt: skip
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.on_message = self._on_message
        subscribed = threading.Event()
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect("127.0.0.1", port, keepalive=60)
        c.loop_start()
        if acks:
            c.subscribe(f"{prefix}/v1/dev/+/ack", qos=1)
            if not subscribed.wait(10):
                raise TimeoutError("boards could not subscribe")
        self.client = c

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        a = json.loads(msg.payload)
        device = msg.topic.split("/")[-2]
        key = (device, a["boot"], a["last"])
        with self._cond:
            if key not in self.acked:
                self.acked[key] = now
                self.events_acked += a["last"] - a["first"] + 1
            self._cond.notify_all()

    def publish(self, device: str, boot: int, first: int, n: int) -> None:
        payload = batch(device, boot, first, n)
        self.sent[(device, boot, first + n - 1)] = time.perf_counter()
        self.client.publish(f"{self.prefix}/v1/dev/{device}/events", payload, qos=1)

    def wait_acks(self, n: int, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.acked) >= n, timeout):
                raise TimeoutError(f"{len(self.acked)}/{n} acks after {timeout}s")

    def latencies(self) -> list[float]:
        return [self.acked[k] - t for k, t in self.sent.items() if k in self.acked]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class AckSink:
    """The boards' side of the acks in C: ``mosquitto_sub`` prints each ack with its arrival
    time (%U, Unix seconds) to a file, so collecting 10,000 acks does not take the CPU the
    system under test needs (a Python client did, on the same 2 cores). A persistent session
    is created first (``-E``: exit once subscribed), so no ack published before the collector
    runs is lost."""

    def __init__(self, port: int, prefix: str, count: int) -> None:
        self.topic = f"{prefix}/v1/dev/+/ack"
        self.count = count
        base = ["mosquitto_sub", "-p", str(port), "-t", self.topic, "-q", "1",
                "-c", "-i", f"acks-{prefix}"]  # fmt: skip
        subprocess.run(base + ["-E"], check=True, timeout=30)
        self.out = tempfile.NamedTemporaryFile(prefix="qadam-bench-acks-", delete=False)
        self.proc = subprocess.Popen(base + ["-C", str(count), "-F", "%U %t %p"],
                                     stdout=self.out, stderr=subprocess.DEVNULL)  # fmt: skip

    def wait(self, timeout: float) -> dict[tuple[str, int, int], float]:
        """-> (device, boot, last) -> arrival time (time.time()) of each distinct ack."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise TimeoutError(f"fewer than {self.count} acks after {timeout}s") from None
        acked: dict[tuple[str, int, int], float] = {}
        for line in Path(self.out.name).read_text().splitlines():
            ts, topic, payload = line.split(" ", 2)
            a = json.loads(payload)
            acked.setdefault((topic.split("/")[-2], a["boot"], a["last"]), float(ts))
        return acked

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()
        os.unlink(self.out.name)


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]
