"""OTA on MicroPython's LittleFS over an emulated ESP32 flash partition that loses power after any
program or erase (issue #14 items 6 and 7): 300 random cuts across updates, trial boots,
confirmations and rollbacks (tests/firmware/cases/lfs_ota_cuts.py), and a cut at every
operation of each step that writes the flash (lfs_ota_steps.py); the board boots a whole,
verified image after each. VM only, like the journal's cuts."""

import pytest

from tests.firmware.test_lfs_powercut import _run


@pytest.mark.slow
def test_ota_power_cuts_on_littlefs() -> None:
    st = _run("lfs_ota_cuts", ("test_lfs_ota_power_cuts",), "64K")  # 64K again since D29-G
    assert st["cuts"] == 300 and st["reprog"] == 0, st
    # Cuts landed in downloads that then resumed, and updates got through between them.
    assert st["resumed"] > 0 and st["activated"] > 0 and st["after_rollback"] > 0, st


@pytest.mark.slow
def test_ota_cut_at_every_operation_of_each_step() -> None:
    st = _run("lfs_ota_steps", ("test_lfs_ota_cut_at_every_operation_of_each_step",), "64K")
    assert (
        st["reprog"] == 0 and min(st[k] for k in ("check", "trial_boot", "rollback", "confirm")) > 0
    ), st
