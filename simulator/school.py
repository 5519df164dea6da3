"""A simulated school: its roster and readers registered in the cloud, one virtual board each."""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from cloud.domain import registry
from simulator.board import DEFAULT_HEAP, LARGE_HEAP, BoardConfig, VirtualBoard
from simulator.roster import Person, make_roster


@dataclass(frozen=True)
class Reader:
    device: str
    place: str
    mode: str  # door | turnstile | canteen
    reader: str  # in | out | canteen


DEFAULT_READERS = (
    Reader("entrance-in", "Main entrance", "turnstile", "in"),
    Reader("entrance-out", "Main entrance", "turnstile", "out"),
    Reader("canteen-1", "Canteen", "canteen", "canteen"),
)


def readers_for(count: int) -> tuple[Reader, ...]:
    """The default three readers, then extra entrance turnstiles alternating in and out."""
    if count <= len(DEFAULT_READERS):
        return DEFAULT_READERS[:count]
    extra = tuple(
        Reader(f"gate-{i}", f"Side entrance {i // 2}", "turnstile", "in" if i % 2 else "out")
        for i in range(1, count - len(DEFAULT_READERS) + 1)
    )
    return DEFAULT_READERS + extra


# A simulated canteen serves all day long (so a demo at any hour shows meals), one dish, and
# lets pupils with no known balance eat on offline credit (docs/protocol.md "Canteen").
CANTEEN_CONFIG = {
    "mode": "canteen",
    "meal_periods": {"day": ["00:00", "23:59"]},
    "menu": {
        "periods": {"day": {"dish": "Plov", "allergens": 0, "price": "650", "reduced": "325"}}
    },
    "offline_credit_limit": "100000",
}


@dataclass
class Summary:
    taps: int = 0
    granted: int = 0
    denied: int = 0
    acked: int = 0
    journal_left: int = 0
    stored: int | None = None
    per_board: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"taps made:      {self.taps} ({self.granted} granted, {self.denied} denied)",
            f"events acked:   {self.acked}",
            f"journals left:  {self.journal_left} unacked",
        ]
        if self.stored is not None:
            out.append(f"rows in cloud:  {self.stored}")
        for device, taps in sorted(self.per_board.items()):
            out.append(f"  {device:<14} {taps} taps")
        return out


class SimulatedSchool:
    """Registers a school in the cloud database and runs one virtual board per reader.

    Device ids get the school id as a prefix so several simulated schools (or tests) can share a
    database and a broker."""

    def __init__(
        self,
        database_url: str,
        *,
        school: str = "demo-school",
        name: str = "School No. 1 (simulated)",
        students: int = 100,
        staff: int = 10,
        boards: int = 3,
        mqtt_host: str = "127.0.0.1",
        mqtt_port: int = 1883,
        prefix: str = "qadam",
        state_dir: Path | None = None,
        seed: int = 1,
        unknown_cards: int = 2,
        echo: Callable[[str, str], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.school = school
        self.name = name
        self.site_key = random.Random(f"site-key:{school}:{seed}").randbytes(16)
        self.people: list[Person] = make_roster(students, staff, seed)
        rng = random.Random(seed + 1)
        self.strangers = [bytes(rng.getrandbits(8) for _ in range(4)) for _ in range(unknown_cards)]
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="qadam-sim-"))
        self.readers = readers_for(boards)
        self.boards: list[VirtualBoard] = []
        for reader in self.readers:
            config = BoardConfig(
                device=f"{school}-{reader.device}",
                school=school,
                site_key=self.site_key,
                reader=reader.reader,
                mqtt_host=mqtt_host,
                mqtt_port=mqtt_port,
                prefix=prefix,
                extra=CANTEEN_CONFIG if reader.mode == "canteen" else {},
            )
            # Canteen boards do not fit the default 64 KB heap yet (docs/decisions.md D16).
            heap = LARGE_HEAP if reader.mode == "canteen" else DEFAULT_HEAP
            self.boards.append(VirtualBoard(config, self.state_dir / config.device, heap=heap,
                                            echo=echo))
        self._rng = random.Random(seed + 2)
        self._stored_before = 0

    # -- cloud side -------------------------------------------------------------------------
    def register(self) -> bytes:
        """Create the school, its readers, people and cards; return the compiled whitelist."""
        from cloud.domain.cardkey import card_key

        with psycopg.connect(self.database_url) as conn:
            exists = conn.execute("SELECT 1 FROM schools WHERE id = %s", (self.school,)).fetchone()
            if not exists:
                registry.create_school(conn, self.school, self.name, self.site_key)
                for reader, board in zip(self.readers, self.boards, strict=True):
                    registry.register_device(
                        conn,
                        board.config.device,
                        self.school,
                        reader.place,
                        reader.mode,
                        reader.reader,
                        # a one-way reader's placement; a canteen counter has none (0012)
                        direction=reader.reader if reader.reader in ("in", "out") else "both",
                    )
                for person in self.people:
                    pid = registry.add_person(conn, self.school, person.kind, person.name)
                    registry.add_card(conn, pid, card_key(self.site_key, person.uid))
            whitelist = registry.compile_whitelist(conn, self.school, version=1)
            conn.commit()
        return whitelist

    def stored_events(self) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM events WHERE school_id = %s", (self.school,)
            ).fetchone()
        return int(row[0]) if row else 0

    # -- boards -----------------------------------------------------------------------------
    def start(self, register: bool = True) -> None:
        whitelist = self.register() if register else None
        # A school may be re-run against the same database: count only this run's rows.
        self._stored_before = self.stored_events()
        for board in self.boards:
            fresh = not (board.flash / "device.json").exists()
            if fresh or whitelist is not None:
                board.write_flash(whitelist)
            board.start()

    def stop(self) -> None:
        for board in self.boards:
            board.stop()

    def random_card(self, stranger_rate: float = 0.02) -> bytes:
        if self.strangers and self._rng.random() < stranger_rate:
            return self._rng.choice(self.strangers)
        return self._rng.choice(self.people).uid

    def tap_many(
        self,
        count: int,
        rate: float | None = None,
        boards: Iterable[VirtualBoard] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """`count` events spread round-robin over the boards, at `rate` taps/s (None: at once).
        A read the board ignores (same card within its debounce time) is tried with another card."""
        targets = list(boards or self.boards)
        started = time.monotonic()
        for i in range(count):
            board = targets[i % len(targets)]
            while board.tap(self.random_card()) is None:
                pass
            if progress is not None:
                progress(i + 1)
            if rate:
                delay = started + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def wait_drained(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for board in self.boards:
            board.wait_drained(max(1.0, deadline - time.monotonic()))

    def summary(self, with_db: bool = True) -> Summary:
        s = Summary()
        for board in self.boards:
            taps = board.taps
            s.taps += len(taps)
            s.granted += sum(1 for t in taps if t.get("result") == "granted")
            s.denied += sum(1 for t in taps if t.get("result") != "granted")
            depth = board.journal_depth or 0
            s.journal_left += depth
            s.acked += len(taps) - depth
            s.per_board[board.config.device] = len(taps)
        if with_db:
            s.stored = self.stored_events() - self._stored_before
        return s


def default_state_dir() -> Path:
    return Path(os.environ.get("QADAM_STATE_DIR", Path.cwd() / "var"))
