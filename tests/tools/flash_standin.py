"""A stand-in for tools.flashing.board.Board (no serial port): what `qadam flash` writes lands in
``FakeBoard.files``, ROMFS deploys in ``deployed``; ``segments`` are the board's ROMFS partition
sizes. The ``board`` fixture installs it and starts each test with nothing written."""

from __future__ import annotations

import hashlib

import pytest


class FakeBoard:
    files: dict[str, bytes] = {}
    segments: list[int] = []
    deployed: list[tuple[int, int]] = []

    def __init__(self, port, baud=115200, timeout=10.0):
        pass

    def enter_raw_repl(self):
        pass

    def identify(self):
        return 6, "1.26.0", "fake ESP32"  # .mpy v6, as test_flash_provision's fake_build bundle

    def romfs_segments(self):
        return list(self.segments)

    def romfs_deploy(self, image_file, size, sha256, partition=0):
        FakeBoard.deployed.append((partition, size))

    def hashes(self, paths):
        return {p: hashlib.sha256(self.files[p]).hexdigest() for p in paths if p in self.files}

    def remove(self, paths):
        pass

    def mkdirs(self, dirs):
        pass

    def write(self, dest, data, progress):
        FakeBoard.files[dest] = bytes(data)

    def soft_reset(self):
        return True

    def close(self):
        pass


@pytest.fixture
def board(monkeypatch):
    from tools.flashing import board as board_mod

    monkeypatch.setattr(board_mod, "Board", FakeBoard)
    monkeypatch.setattr(board_mod, "check_port", lambda port: None)
    FakeBoard.files, FakeBoard.deployed, FakeBoard.segments = {}, [], []
    return FakeBoard
