"""Plain text progress on stderr: a redrawn bar on a terminal, one line per file otherwise."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, total_files: int, total_bytes: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total_files = total_files
        self.total_bytes = max(1, total_bytes)
        self.files = 0
        self.done = 0
        self._name = ""
        self._base = 0

    def start(self, name: str) -> None:
        self.files += 1
        self._name = name
        self._base = self.done

    def update(self, written: int) -> None:
        self.done = self._base + written
        if self.tty:
            self.stream.write("\r" + self._line() + "\x1b[K")
            self.stream.flush()

    def finish_file(self, size: int) -> None:
        self.done = self._base + size
        self.stream.write(
            ("\r" if self.tty else "") + self._line() + ("\x1b[K\n" if self.tty else "\n")
        )
        self.stream.flush()

    def _line(self) -> str:
        width = 24
        filled = int(width * self.done / self.total_bytes)
        bar = "#" * filled + "." * (width - filled)
        pct = 100 * self.done // self.total_bytes
        return f"  [{bar}] {pct:3d}% {self.files}/{self.total_files} {self._name}"
