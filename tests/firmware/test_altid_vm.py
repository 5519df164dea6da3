"""The alt-id case modules (tests/firmware/cases/test_fw_altid_*.py: the QR scanner driver on
the UART-level emulator, the keypad's key frames and PIN entry, the QR and PIN verification with
replay cache and lockout) in the real MicroPython VM at a door's 64 KiB, each named test seen to
pass there (test_fw_micropython.py runs every case module too; this names what D29-J relies
on, so a test renamed or dropped is noticed); and the ESP32 adapter's path in a bigger heap."""

from __future__ import annotations

import subprocess

import pytest
from test_fw_micropython import REPO, RUNNER, micropython, vm_env

EXPECTED = {
    "test_fw_altid_scan": [
        "test_a_line_arrives_byte_by_byte_at_the_baud_rate",
        "test_crlf_lf_and_two_codes_back_to_back",
        "test_a_too_long_line_is_dropped_whole_and_the_next_one_read",
        "test_poll_reads_what_has_arrived_and_never_waits",
        "test_keypad_4_and_8_bit_key_frames_and_cards_on_the_same_lines",
        "test_an_8_bit_key_with_a_bad_complement_is_refused",
        "test_pin_entry_number_hash_pin_hash",
        "test_pin_entry_times_out_and_too_long_entries_are_void",
    ],
    "test_fw_altid_verify": [
        "test_hmac_sha256_matches_rfc4231_case_2",
        "test_a_valid_qr_opens_once_and_the_event_carries_its_method",
        "test_expired_future_forged_wrong_person_and_no_consent_are_refused",
        "test_no_qr_without_a_synced_clock_and_garbage_is_no_event",
        "test_the_replay_cache_refuses_rather_than_forgets",
        "test_pin_right_wrong_and_lockout",
        "test_a_person_or_pin_record_is_never_a_card_and_the_card_still_works",
    ],
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_altid_cases_pass_in_the_vm_at_64k(module: str) -> None:
    proc = subprocess.run(
        [micropython(), "-X", "heapsize=64K", RUNNER, module],
        capture_output=True, text=True, timeout=120, env=vm_env(), cwd=REPO,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "FAIL" not in out, out
    for name in EXPECTED[module]:
        assert f"PASS {module}.{name}" in out, (name, out)


def test_the_esp32_adapter_feeds_altid_in_the_vm() -> None:
    """hal.esp32 with a QR scanner on a UART and a keypad on the Wiegand lines, the whole run:
    it needs 80 KiB with the emulators and the harness (the test_fw_esp32_mfrc522 precedent);
    96 for room."""
    module = "test_fw_altid_esp32"
    proc = subprocess.run(
        [micropython(), "-X", "heapsize=96K", RUNNER, module],
        capture_output=True, text=True, timeout=120, env=vm_env(QADAM_FW_FULL="1"), cwd=REPO,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "FAIL" not in out, out
    for name in ("test_the_board_builds_its_scanner_and_keypad_reader",
                 "test_a_scanned_code_and_a_typed_pin_reach_altid_and_a_card_app_tap"):  # fmt: skip
        assert f"PASS {module}.{name}" in out, (name, out)
