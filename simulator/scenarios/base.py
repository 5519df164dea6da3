"""What every scenario shares: the context it runs in, its summary, and a harness that registers a
school, starts its virtual boards (optionally each behind a NetProxy), an in-process ingest, plays
a schedule of taps by *simulated* time and checks the end-to-end invariants.

Simulated time runs `speed` times faster than real time: a tap scheduled at simulated second `s`
is made at real second `s / speed` after the start. The boards' own clocks stay real (an event's
`t` is the host time), so the summary reports both durations.

Invariants checked for every scenario (`Harness.verify`):
- every identity a board printed on an `@tap` line is unique (no identity reused);
- the database holds exactly those tap events, each once, with the same result;
- every journal is drained (each board says `journal: 0`).
"""

from __future__ import annotations

import json
import random
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import psycopg

from simulator.board import DEFAULT_HEAP, LARGE_HEAP, BoardConfig, BoardError, VirtualBoard
from simulator.netproxy import NetProxy
from simulator.school import CANTEEN_CONFIG, Reader, SimulatedSchool


@dataclass
class Context:
    """How to run a scenario. Fields left None take the scenario's DEFAULTS."""

    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    prefix: str = "qadam"
    school: str | None = None
    students: int | None = None
    staff: int | None = None
    boards: int | None = None
    minutes: float | None = None  # simulated length of the busy period
    speed: float | None = None  # simulated seconds per real second
    seed: int = 1
    state_dir: Path | None = None
    wait: float = 120.0  # real seconds to wait for the journals to drain at the end
    ingest: bool = True  # run an in-process ingest (off: a `qadam ingest` must be running)
    options: dict[str, Any] = field(default_factory=dict)  # scenario-specific knobs
    echo: Callable[[str, str], None] | None = None
    log: Callable[[str], None] | None = None

    def with_defaults(self, defaults: dict[str, Any]) -> Context:
        names = {f.name for f in fields(self)}
        plain = {k: v for k, v in defaults.items() if k in names and getattr(self, k) is None}
        opts = {k: v for k, v in defaults.items() if k not in names}
        opts.update({k: v for k, v in self.options.items() if v is not None})
        return replace(self, **plain, options=opts)

    def say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)


@dataclass
class Summary:
    scenario: str
    school: str = ""
    boards: int = 0
    students: int = 0
    taps: int = 0
    granted: int = 0
    denied: int = 0
    ignored: int = 0
    stored: int = 0
    journal_left: int = 0
    sim_seconds: float = 0.0
    real_seconds: float = 0.0
    tap_seconds: float = 0.0
    drain_seconds: float = 0.0
    speed: float = 1.0
    max_lag: float = 0.0  # how far (real s) the taps fell behind their schedule at worst
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def lines(self) -> list[str]:
        out = [
            f"scenario:       {self.scenario} (school {self.school}, {self.boards} boards, "
            f"{self.students} students)",
            f"simulated time: {self.sim_seconds / 60:.1f} min at speed x{self.speed:g}",
            f"real time:      {self.real_seconds:.1f} s (tapping {self.tap_seconds:.1f} s, "
            f"draining {self.drain_seconds:.1f} s, worst lag {self.max_lag:.2f} s)",
            f"taps made:      {self.taps} ({self.granted} granted, {self.denied} denied, "
            f"{self.ignored} reads ignored)",
            f"rows in cloud:  {self.stored}",
            f"journals left:  {self.journal_left} unacked",
        ]
        for key, value in self.figures.items():
            out.append(f"{key + ':':<15} {value}")
        if self.violations:
            out.append(f"VIOLATIONS ({len(self.violations)}):")
            out += [f"  - {v}" for v in self.violations[:30]]
            if len(self.violations) > 30:
                out.append(f"  ... and {len(self.violations) - 30} more")
        else:
            out.append("invariants:     OK (every tap stored exactly once, journals drained)")
        return out


@dataclass
class TapRecord:
    board: str
    at: float  # time.monotonic() when the tap was sent
    uid: bytes
    reader: str | None
    result: dict[str, Any] | None  # the @tap line, None if the board ignored the read


# A schedule entry: (simulated second, board index, action). An action is a card UID to tap
# (bytes), (uid, reader), or a callable run in that board's thread (e.g. a power cut).
Action = bytes | tuple[bytes, str] | Callable[[VirtualBoard], None]


def whitelist_keys(wl: bytes) -> set[str]:
    count = struct.unpack_from("<I", wl, 12)[0]
    return {wl[32 + 12 * i : 40 + 12 * i].hex() for i in range(count)}


def whitelist_version(wl: bytes) -> int:
    return struct.unpack_from("<I", wl, 8)[0]


class Harness:
    def __init__(
        self, ctx: Context, name: str, readers: list[Reader], *, proxied: bool = False
    ) -> None:
        self.ctx = ctx
        self.name = name
        short = "".join(w[0] for w in name.split("_"))
        school_id = ctx.school or f"{short}{uuid.uuid4().hex[:5]}"
        self.school = SimulatedSchool(
            ctx.database_url,
            school=school_id,
            students=ctx.students or 0,
            staff=ctx.staff or 0,
            boards=0,
            mqtt_host=ctx.mqtt_host,
            mqtt_port=ctx.mqtt_port,
            prefix=ctx.prefix,
            state_dir=ctx.state_dir,
            seed=ctx.seed,
            echo=ctx.echo,
        )
        self.proxies: dict[str, NetProxy] = {}
        boards = []
        for reader in readers:
            device = f"{school_id}-{reader.device}"
            port = ctx.mqtt_port
            if proxied:
                proxy = NetProxy((ctx.mqtt_host, ctx.mqtt_port), name=f"proxy-{device}")
                self.proxies[device] = proxy
                port = proxy.port
            config = BoardConfig(
                device=device,
                school=school_id,
                site_key=self.school.site_key,
                reader=reader.reader,
                mqtt_host=ctx.mqtt_host,
                mqtt_port=port,
                prefix=ctx.prefix,
                # A canteen serves all day, as in `qadam sim`: the firmware's own meal periods
                # (breakfast, lunch) would deny every meal of a run outside them.
                extra=dict(CANTEEN_CONFIG) if reader.mode == "canteen" else {},
            )
            # Canteen boards do not fit the default 64 KB heap yet (docs/decisions.md D16).
            heap = LARGE_HEAP if reader.mode == "canteen" else DEFAULT_HEAP
            boards.append(
                VirtualBoard(config, self.school.state_dir / device, heap=heap, echo=ctx.echo)
            )
        self.school.readers = tuple(readers)
        self.school.boards = boards
        self.rng = random.Random(ctx.seed + 7)
        self.records: list[TapRecord] = []
        self._rec_lock = threading.Lock()
        self.summary = Summary(
            name, school=school_id, boards=len(boards), students=ctx.students or 0
        )
        self.summary.speed = ctx.speed or 1.0
        self.whitelists: dict[int, bytes] = {}
        self.status: dict[str, dict[str, Any]] = {}  # device -> its newest status (MQTT)
        self._status_cond = threading.Condition()
        self._mqtt = None
        self._ingest = None
        self._t_start = time.monotonic()

    @property
    def boards(self) -> list[VirtualBoard]:
        return self.school.boards

    @property
    def speed(self) -> float:
        return self.ctx.speed or 1.0

    # -- life cycle -----------------------------------------------------------------------------
    def start(self, prepare: Callable[[psycopg.Connection], None] | None = None) -> bytes:
        """Register the school (then `prepare(conn)` may change people), compile whitelist v1,
        write every board's flash, start the proxies, the ingest and the boards."""
        from cloud.domain.registry import compile_whitelist

        ctx = self.ctx
        self._t_start = time.monotonic()
        self.school.register()
        with psycopg.connect(ctx.database_url) as conn:
            if prepare is not None:
                prepare(conn)
            wl = compile_whitelist(conn, self.school.school, version=1)
            conn.commit()
        self.whitelists[1] = wl
        for proxy in self.proxies.values():
            proxy.start()
        if ctx.ingest:
            from cloud.ingest.service import Ingest
            from cloud.settings import Settings

            self._ingest = Ingest(
                Settings(
                    database_url=ctx.database_url,
                    mqtt_host=ctx.mqtt_host,
                    mqtt_port=ctx.mqtt_port,
                    topic_prefix=ctx.prefix,
                    ingest_client_id=f"scenario-{self.school.school}",
                )
            )
            self._ingest.start()
        self._start_mqtt()
        for board in self.boards:
            board.write_flash(wl)
        errors: list[BaseException] = []

        def boot(b: VirtualBoard) -> None:
            try:
                b.start(wait=60)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=boot, args=(b,)) for b in self.boards]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        ctx.say(f"{len(self.boards)} boards up in {self.school.state_dir}")
        self.wait_online(30)
        return wl

    def stop(self) -> None:
        for board in self.boards:
            try:
                board.stop()
            except Exception:  # noqa: BLE001 - best effort at teardown
                board.power_cut()
        for proxy in self.proxies.values():
            proxy.close()
        if self._ingest is not None:
            self._ingest.stop()
            self._ingest = None
            _forget_session(self.ctx, f"scenario-{self.school.school}")
        if self._mqtt is not None:
            self._mqtt.loop_stop()
            self._mqtt.disconnect()
            self._mqtt = None

    # -- the cloud's view: statuses, whitelist pushes --------------------------------------------
    def _start_mqtt(self) -> None:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"scenario-ctl-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        devices = {b.config.device for b in self.boards}

        def on_message(client, userdata, msg):
            device = msg.topic.split("/")[-2]
            if device not in devices:
                return
            try:
                doc = json.loads(msg.payload)
            except ValueError:
                return
            with self._status_cond:
                self.status[device] = doc
                self._status_cond.notify_all()

        def on_connect(client, userdata, flags, reason, props):
            client.subscribe(f"{self.ctx.prefix}/v1/dev/+/status", 1)

        c.on_message = on_message
        c.on_connect = on_connect
        c.connect(self.ctx.mqtt_host, self.ctx.mqtt_port)
        c.loop_start()
        self._mqtt = c

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], devices, timeout: float):
        """Wait until every device's newest status satisfies `predicate`; return the ones that
        did not in time."""
        deadline = time.monotonic() + timeout
        pending = set(devices)
        with self._status_cond:
            while True:
                pending = {d for d in pending if not predicate(self.status.get(d) or {})}
                left = deadline - time.monotonic()
                if not pending or left <= 0:
                    return pending
                self._status_cond.wait(min(left, 0.2))

    def wait_online(self, timeout: float) -> None:
        late = self.wait_status(
            lambda s: s.get("online") is True, [b.config.device for b in self.boards], timeout
        )
        if late:
            self.ctx.say(f"warning: not online after {timeout:.0f}s: {sorted(late)}")

    def push_whitelist(self, new: bytes, boards: list[VirtualBoard] | None = None) -> int:
        """Publish `new` to the boards as the cloud does (protocol.md "Whitelist updates"): a delta
        from the version the board reports if we have that list, else a snapshot. Returns the
        number of chunks published."""
        from cloud.domain.whitelist import DELTA, SNAPSHOT, build_delta, chunk

        assert self._mqtt is not None
        version = whitelist_version(new)
        self.whitelists[version] = new
        sent = 0
        for board in boards or self.boards:
            have = (self.status.get(board.config.device) or {}).get("wl")
            base = self.whitelists.get(have) if isinstance(have, int) else None
            if base is not None and have != version:
                msgs = chunk(build_delta(base, new), version, base=have, kind=DELTA)
            else:
                msgs = chunk(new, version, kind=SNAPSHOT)
            topic = f"{self.ctx.prefix}/v1/dev/{board.config.device}/wl"
            infos = [self._mqtt.publish(topic, m, qos=1) for m in msgs]
            for info in infos:
                info.wait_for_publish(10)
            sent += len(msgs)
        return sent

    def wait_wl(self, version: int, boards: list[VirtualBoard], timeout: float) -> set[str]:
        return self.wait_status(
            lambda s: s.get("wl") == version, [b.config.device for b in boards], timeout
        )

    # -- playing a schedule ------------------------------------------------------------------
    def play(
        self,
        schedule: list[tuple[float, int, Action]],
        events: list[tuple[float, Callable[[], None]]] | None = None,
    ) -> None:
        """Make the taps of `schedule` at their simulated times (one thread per board) while
        `events` (simulated second, callable) run in a director thread."""
        per_board: list[list[tuple[float, Action]]] = [[] for _ in self.boards]
        for sim_s, index, action in sorted(schedule, key=lambda e: e[0]):
            per_board[index].append((sim_s, action))
        t0 = time.monotonic()
        errors: list[str] = []
        lag = [0.0]

        def wait_until(sim_s: float) -> None:
            target = t0 + sim_s / self.speed
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                lag[0] = max(lag[0], -delay)

        def run_board(board: VirtualBoard, items: list[tuple[float, Action]]) -> None:
            for sim_s, action in items:
                wait_until(sim_s)
                try:
                    if callable(action):
                        action(board)
                        continue
                    uid, reader = action if isinstance(action, tuple) else (action, None)
                    at = time.monotonic()
                    result = board.tap(uid, reader, wait=30)
                    with self._rec_lock:
                        self.records.append(TapRecord(board.config.device, at, uid, reader, result))
                except BoardError as exc:
                    errors.append(f"{board.config.device}: {exc}")
                    return

        def director() -> None:
            for sim_s, fn in sorted(events or [], key=lambda e: e[0]):
                wait_until(sim_s)
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - reported as a violation
                    errors.append(f"scenario step at {sim_s:.0f}s failed: {exc!r}")

        threads = [
            threading.Thread(target=run_board, args=(b, items), daemon=True)
            for b, items in zip(self.boards, per_board, strict=True)
        ]
        threads.append(threading.Thread(target=director, daemon=True))
        progress = threading.Event()
        total = sum(1 for e in schedule if not callable(e[2]))

        def report() -> None:
            while not progress.wait(5):
                self.ctx.say(
                    f"  {len(self.records)}/{total} taps, simulated "
                    f"{(time.monotonic() - t0) * self.speed / 60:.1f} min"
                )

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        progress.set()
        self.summary.tap_seconds = time.monotonic() - t0
        self.summary.max_lag = lag[0]
        self.summary.violations += errors

    # -- checks --------------------------------------------------------------------------------
    def drain(self) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.ctx.wait
        for board in self.boards:
            try:
                if not board.running:
                    board.start(wait=60)
                board.wait_drained(max(1.0, deadline - time.monotonic()))
            except BoardError as exc:
                self.summary.violations.append(f"journal not drained: {exc}".splitlines()[0])
        self.summary.drain_seconds = time.monotonic() - t0

    def verify(self) -> Summary:
        s = self.summary
        tapped: dict[tuple[str, int, int], str] = {}
        s.taps = s.granted = s.denied = s.ignored = 0
        for board in self.boards:
            for tap in board.taps:
                ident = (board.config.device, int(tap["boot"]), int(tap["seq"]))
                if ident in tapped:
                    s.violations.append(f"identity {ident} used by two taps")
                tapped[ident] = tap["result"]
                s.taps += 1
                s.granted += tap["result"] == "granted"
                s.denied += tap["result"] != "granted"
        s.ignored = sum(1 for r in self.records if r.result is None)
        with psycopg.connect(self.ctx.database_url) as conn:
            rows = conn.execute(
                "SELECT device_id, boot, seq, result FROM events"
                " WHERE school_id = %s AND kind = 'tap'",
                (self.school.school,),
            ).fetchall()
        stored: dict[tuple[str, int, int], str] = {}
        for dev, boot, seq, result in rows:
            ident = (dev, int(boot), int(seq))
            if ident in stored:
                s.violations.append(f"event {ident} stored twice")
            stored[ident] = result
        s.stored = len(rows)
        missing = sorted(set(tapped) - set(stored))
        extra = sorted(set(stored) - set(tapped))
        if missing:
            s.violations.append(f"{len(missing)} taps not in the database, e.g. {missing[:3]}")
        if extra:
            s.violations.append(f"{len(extra)} stored events no board tapped, e.g. {extra[:3]}")
        differ = [i for i in tapped if i in stored and stored[i] != tapped[i]]
        if differ:
            s.violations.append(f"{len(differ)} events stored with another result: {differ[:3]}")
        s.journal_left = 0
        for board in self.boards:
            try:
                depth = board.stat()["journal"] if board.running else board.journal_depth
            except BoardError:
                depth = board.journal_depth
            s.journal_left += depth or 0
        if s.journal_left:
            s.violations.append(f"{s.journal_left} events still in the boards' journals")
        s.real_seconds = time.monotonic() - self._t_start
        return s


def _forget_session(ctx: Context, client_id: str) -> None:
    """Drop the ingest's persistent broker session, so a finished run leaves no queue behind."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    clean_session=True, protocol=mqtt.MQTTv311)  # fmt: skip
    try:
        c.connect(ctx.mqtt_host, ctx.mqtt_port)
        c.loop_start()
        time.sleep(0.1)
        c.disconnect()
        c.loop_stop()
    except OSError:
        pass


def arrivals(rng: random.Random, count: int, seconds: float, peak: float = 0.7) -> list[float]:
    """`count` simulated arrival times in [0, seconds), peaking at `peak` of the window."""
    return sorted(rng.triangular(0, seconds, seconds * peak) for _ in range(count))


def run_harness(h: Harness, body: Callable[[Harness], None], prepare=None) -> Summary:
    """Start, run `body`, drain, verify, stop: the common frame of a scenario."""
    try:
        h.start(prepare)
        body(h)
        h.drain()
        return h.verify()
    finally:
        h.stop()
