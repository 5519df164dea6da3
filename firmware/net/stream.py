# What the firmware uses of asyncio's streams (the MQTT socket, the sim's stdin), in place of
# asyncio.stream on MicroPython: that module's classes and functions take ~1.7 KB of heap once
# loaded, this module less than half of that (64 KiB boards, docs/decisions.md D16). A module of its own, not
# part of compat: the unit cases that load the journal alone run from the .mpy bundle in 64 KiB
# and have no room for it. Under CPython (unit tests) asyncio's own streams are used.
from compat import MICROPYTHON, asyncio

if MICROPYTHON:
    from asyncio import core as _aio

    class Stream:
        """A non-blocking socket (or stdin) as reader and writer. The reads and drain() are
        generators, as in asyncio.stream: they yield the socket to the event loop's I/O queue
        until it is ready, and are awaited like coroutines."""

        def __init__(self, s):
            self.s = s
            self.out = b""  # what write() could not hand to the socket yet

        def readinto(self, buf):
            yield _aio._io_queue.queue_read(self.s)
            return self.s.readinto(buf)

        def readexactly(self, n):
            r = b""
            while n:
                yield _aio._io_queue.queue_read(self.s)
                got = self.s.read(n)
                if got is not None:  # None: woken, but nothing to read after all
                    if not got:
                        raise EOFError
                    r += got
                    n -= len(got)
            return r

        def readline(self):
            r = b""
            while True:
                yield _aio._io_queue.queue_read(self.s)
                got = self.s.readline()
                if got is None:
                    continue
                r += got
                if not got or r[-1] == 10:
                    return r

        def write(self, buf):
            if not self.out:
                n = self.s.write(buf)  # non-blocking: takes what fits, None if nothing
                if n == len(buf):
                    return
                if n is not None:
                    buf = buf[n:]
            self.out += buf

        def drain(self):
            if not self.out:
                # Always yield once: a loop of write() + drain() must not starve the others.
                return (yield from _aio.sleep_ms(0))
            mv = memoryview(self.out)
            off = 0
            while off < len(mv):
                yield _aio._io_queue.queue_write(self.s)
                n = self.s.write(mv[off:])
                if n is not None:
                    off += n
            self.out = b""

        def close(self):
            pass

        async def wait_closed(self):
            self.s.close()

    def open_connection(host, port, ssl=None, server_hostname=None):
        # A TCP connection as (reader, writer), as asyncio.open_connection; with `ssl` (a
        # tls.SSLContext, net/link.py) the socket is wrapped for TLS without a handshake: the
        # handshake runs, non-blocking, inside the first write/drain and read (the socket polls
        # for what mbedTLS waits on), and a certificate the context refuses raises there
        # (ValueError, mbedTLS's reason). The name lookup blocks, as asyncio's does.
        import socket
        from errno import EINPROGRESS
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(ai[0], ai[1], ai[2])
        s.setblocking(False)
        try:
            # TCP_NODELAY (IPPROTO_TCP 6, option 1 in Linux and lwIP; the unix port names
            # neither): a batch is written event by event, and with Nagle's algorithm the rest
            # of it waited for the broker's delayed ACK of the first segment, ~40 ms a batch
            # (D25-L). A port without the option keeps Nagle.
            s.setsockopt(6, 1, 1)
        except OSError:
            pass
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.errno != EINPROGRESS:
                raise
        yield _aio._io_queue.queue_write(s)  # writable: connected (or failed: the reads say so)
        if ssl is not None:
            s = ssl.wrap_socket(s, server_hostname=server_hostname or host,
                                do_handshake_on_connect=False)
            s.setblocking(False)
        st = Stream(s)
        return st, st
else:
    def open_connection(host, port, ssl=None, server_hostname=None):
        if ssl is None:
            return asyncio.open_connection(host, port)
        return asyncio.open_connection(host, port, ssl=ssl, server_hostname=server_hostname or host)
