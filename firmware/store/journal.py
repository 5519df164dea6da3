# Durable event log (invariant 3: an event stays on flash until the cloud acks it).
#
# Simple on purpose (a later issue redoes it with segments + CRC):
#   journal.log  lines "<boot> <seq> <event json>\n", appended in order; the JSON is stored
#                verbatim so a retransmission is byte-identical to the first transmission.
#   journal.cur  "<boot> <seq>" of the newest trimmed record, written atomically (tmp + rename).
# The trim cursor is a record identity, not a byte offset: (boot, seq) increases along the log, so
# "everything <= cursor is acked" stays true whatever happens to the log file (compaction, a torn
# tail rewrite, a reset between writing the cursor and truncating the log).
import os

from compat import exists, write_atomic

LOG = "journal.log"
CUR = "journal.cur"
BOOT = "boot.cnt"


def _read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode().strip()
    except OSError:
        return None


def next_boot(dirpath=".", floor=0):
    """Increment and persist the boot counter; call before anything else at start-up.
    `floor`: the result is > floor. A lost or corrupt counter must not restart at 1 and reuse
    event identities; the journal knows the newest boot it saw (Journal.min_boot())."""
    path = dirpath + "/" + BOOT
    s = _read_text(path)
    try:
        boot = int(s) + 1 if s else 1
    except ValueError:
        print("# boot counter corrupt: %r" % s)
        boot = 1
    if boot <= floor:
        boot = floor + 1
    write_atomic(path, b"%d\n" % boot)
    return boot


def _parse(line):
    # -> (boot, seq, start of json) or None for a malformed line.
    try:
        a = line.index(b" ")
        b = line.index(b" ", a + 1)
        return int(line[:a]), int(line[a + 1:b]), b + 1
    except ValueError:
        return None


class Journal:
    def __init__(self, dirpath="."):
        self.dir = dirpath
        self.log = dirpath + "/" + LOG
        self.curpath = dirpath + "/" + CUR
        self.cur = (-1, 0)  # newest trimmed (boot, seq)
        self.count = 0  # unacked records
        self.head = 0  # byte offset of the oldest unacked record in the log
        self.head_id = None  # (boot, seq) of that record
        self.last_id = None  # (boot, seq) of the newest record
        self._open()

    def _open(self):
        s = _read_text(self.curpath)
        if s:
            try:
                b, q = s.split()
                self.cur = (int(b), int(q))
            except ValueError:
                print("# journal: bad cursor %r, keeping every record" % s)
        if not exists(self.log):
            open(self.log, "wb").close()
            return
        torn = False
        skip = 0  # trimmed records still in the file
        off = 0
        with open(self.log, "rb") as f:
            while True:
                line = f.readline()
                if not line:
                    break
                if line[-1:] != b"\n":
                    torn = True  # reset during an append: drop the partial record
                    print("# journal: dropping torn tail (%d bytes)" % len(line))
                    break
                p = _parse(line)
                if p is None:
                    print("# journal: skipping malformed record at %d" % off)
                    skip += 1
                elif (p[0], p[1]) <= self.cur:
                    skip += 1
                else:
                    if self.head_id is None:
                        self.head = off
                        self.head_id = (p[0], p[1])
                    self.last_id = (p[0], p[1])
                    self.count += 1
                off += len(line)
        if self.head_id is None:
            self.head = off
        if torn or skip:
            self._rewrite()

    def _rewrite(self):
        # Copy the unacked, complete records to a fresh file and rename it over the log.
        tmp = self.log + ".tmp"
        with open(self.log, "rb") as src, open(tmp, "wb") as dst:
            src.seek(self.head)
            n = self.count
            while n:
                line = src.readline()
                p = _parse(line)
                if line[-1:] != b"\n":
                    break
                if p is not None:
                    dst.write(line)
                    n -= 1
        os.rename(tmp, self.log)
        self.head = 0

    def min_boot(self):
        # Newest boot this journal has seen (in a record or in the trim cursor).
        b = self.last_id[0] if self.last_id else -1
        return b if b > self.cur[0] else self.cur[0]

    def append(self, boot, seq, data):
        """Append one event (its JSON, str or bytes). Returns when the record is written and closed."""
        with open(self.log, "ab") as f:
            # One write call per record keeps a torn record to the tail only.
            if isinstance(data, str):
                f.write(("%d %d %s\n" % (boot, seq, data)).encode())
            else:
                f.write(b"%d %d " % (boot, seq) + data + b"\n")
        if self.head_id is None:
            self.head_id = (boot, seq)
        self.last_id = (boot, seq)
        self.count += 1

    def records(self):
        """Yield (boot, seq, line, start) for each unacked record, oldest first; the event bytes
        are line[start:-1]. Lines are yielded as read, so a caller holds one at a time."""
        if not self.count:
            return
        with open(self.log, "rb") as f:
            f.seek(self.head)
            while True:
                line = f.readline()
                if not line or line[-1:] != b"\n":
                    return
                p = _parse(line)
                if p is not None:
                    yield p[0], p[1], line, p[2]

    def covers_head(self, boot, first, last):
        h = self.head_id
        return h is not None and h[0] == boot and first <= h[1] <= last

    def ack(self, boot, first, last):
        """Apply an ack per protocol.md: only one covering the oldest record trims (every record of
        that boot with seq <= last). Returns the number of records dropped (0 = ignored)."""
        if not self.covers_head(boot, first, last):
            return 0
        dropped = 0
        off = self.head
        nxt = None
        with open(self.log, "rb") as f:
            f.seek(off)
            while True:
                line = f.readline()
                if not line or line[-1:] != b"\n":
                    break
                p = _parse(line)
                if p is not None:
                    if p[0] != boot or p[1] > last:
                        nxt = (p[0], p[1])
                        break
                    dropped += 1
                    self.cur = (p[0], p[1])
                off += len(line)
        # Persist the cursor first: a reset right after this loses nothing and re-sends nothing
        # that was acked; the log itself is only compacted afterwards.
        write_atomic(self.curpath, b"%d %d\n" % self.cur)
        self.count -= dropped
        self.head = off
        self.head_id = nxt
        if not self.count:
            open(self.log, "wb").close()  # everything acked: compact by truncation
            self.head = 0
            self.last_id = None
        return dropped
