"""board-configs/ and tools/boardconfig.py: every shipped board validates; every rule is shown by
one minimal mutation of a valid document, with the exact path and reason it must report."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools import boardconfig
from tools.boardconfig import (
    ANNOTATIONS,
    ERROR,
    KEYWORDS,
    ROOT,
    WARNING,
    BoardConfigError,
    Problem,
    board_files,
    check_file,
    load_board,
    load_schema,
    schema_keywords,
    validate,
)
from tools.cli import main

REPO = Path(__file__).resolve().parents[2]
BOARDS = board_files()

ESP32_PINS = "0-19, 21-23, 25-27, 32-39"
S3_PINS = "0-21, 26-48"


def door(**top: Any) -> dict:
    """The smallest valid door: ESP32, MFRC522 on SPI, one relay."""
    doc = {
        "hal": "esp32",
        "chip": "esp32",
        "mode": "door",
        "buses": {"spi": {"type": "spi", "sck": 18, "mosi": 23, "miso": 19}},
        "readers": [{"type": "mfrc522", "reader": "in", "bus": "spi", "pins": {"cs": 21}}],
        "relays": [{"pin": 26}],
    }
    doc.update(top)
    return doc


def canteen() -> dict:
    """The smallest valid canteen: PN532 and SSD1306 sharing one I2C bus."""
    return {
        "hal": "esp32",
        "chip": "esp32",
        "mode": "canteen",
        "buses": {"i2c": {"type": "i2c", "sda": 21, "scl": 22}},
        "readers": [{"type": "pn532", "reader": "canteen", "bus": "i2c"}],
        "display": {"type": "ssd1306", "bus": "i2c"},
    }


def turnstile() -> dict:
    return {
        "hal": "esp32",
        "chip": "esp32",
        "mode": "turnstile",
        "readers": [
            {"type": "wiegand26", "reader": "in", "pins": {"d0": 34, "d1": 35}},
            {"type": "wiegand34", "reader": "out", "pins": {"d0": 36, "d1": 39}},
        ],
        "relays": [{"pin": 26, "reader": "in"}, {"pin": 27, "reader": "out"}],
        "passage_sensors": [{"pin": 32, "reader": "in"}, {"pin": 33, "reader": "out"}],
    }


def s3(**top: Any) -> dict:
    doc = door(chip="esp32s3")
    doc["buses"]["spi"].update(sck=12, mosi=11, miso=13)
    doc["readers"][0]["pins"]["cs"] = 10
    doc["relays"][0]["pin"] = 4
    doc.update(top)
    return doc


_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    return [int(i) if i else k for k, i in _TOKEN.findall(path)]


def put(doc: dict, path: str, value: Any) -> dict:
    """A copy of doc with the value at path ("readers[0].pins.cs") replaced."""
    doc = copy.deepcopy(doc)
    *parents, last = _steps(path)
    node: Any = doc
    for step in parents:
        node = node[step]
    node[last] = value
    return doc


def drop(doc: dict, path: str) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = _steps(path)
    node: Any = doc
    for step in parents:
        node = node[step]
    del node[last]
    return doc


def err(path: str, reason: str) -> Problem:
    return Problem(path, ERROR, reason)


def warn(path: str, reason: str) -> Problem:
    return Problem(path, WARNING, reason)


# -- the shipped boards ------------------------------------------------------------------------


def test_there_are_at_least_four_boards_covering_every_mode_and_chip():
    docs = [load_board(p) for p in BOARDS]
    assert len(docs) >= 4
    assert {d["mode"] for d in docs} == {"door", "turnstile", "canteen"}
    assert {d["chip"] for d in docs} == {"esp32", "esp32s3"}
    assert {r["type"] for d in docs for r in d["readers"]} >= {"mfrc522", "pn532", "wiegand26"}
    # The four: a canteen counter with a PN532, a buzzer and a small display ...
    canteens = [d for d in docs if d["mode"] == "canteen"]
    assert any(
        {r["type"] for r in d["readers"]} == {"pn532"}
        and d.get("buzzer", {}).get("pin") is not None
        and d.get("display", {}).get("type") == "ssd1306"
        and d["display"].get("bus") in d["buses"]
        for d in canteens
    ), [d["name"] for d in canteens]
    # ... a turnstile with two Wiegand readers (in and out), two relays (one per direction) and
    # two passage sensors (one per direction) ...
    turnstiles = [d for d in docs if d["mode"] == "turnstile"]

    def full_turnstile(d: dict) -> bool:
        wiegand = [r["reader"] for r in d["readers"] if r["type"].startswith("wiegand")]
        relays = [r.get("reader") for r in d.get("relays", [])]
        sensors = [s["reader"] for s in d.get("passage_sensors", [])]
        return sorted(wiegand) == sorted(relays) == sorted(sensors) == ["in", "out"]

    assert any(full_turnstile(d) for d in turnstiles), [d["name"] for d in turnstiles]
    # ... and an ESP32-S3 variant.
    assert any(d["chip"] == "esp32s3" for d in docs)


@pytest.mark.parametrize("path", BOARDS, ids=[p.name for p in BOARDS])
def test_shipped_board_is_valid_and_warning_free(path):
    doc = load_board(path)
    assert validate(doc) == []
    # a board.json the firmware loads: main.py picks the adapter by "hal"
    assert doc["hal"] == "esp32"
    assert doc["name"] == path.stem


def test_minimal_documents_are_valid():
    for doc in (door(), canteen(), turnstile(), s3()):
        assert validate(doc) == [], doc["mode"]


# -- the schema file -------------------------------------------------------------------------


def test_schema_uses_only_keywords_the_validator_understands():
    assert set(schema_keywords(load_schema())) - KEYWORDS - ANNOTATIONS == set()


def test_every_key_in_the_schema_is_documented():
    schema = load_schema()
    walker = boardconfig._Walker(schema)
    undocumented = []

    def visit(node: dict, where: str) -> None:
        for key, sub in node.get("properties", {}).items():
            target = walker.resolve(sub)
            if "description" not in sub and "description" not in target:
                undocumented.append(f"{where}.{key}")
            visit(target, f"{where}.{key}")

    visit(schema, "(root)")
    for name, sub in schema["$defs"].items():
        visit(sub, name)
        for tag, ref in sub.get("x-discriminator", {}).get("mapping", {}).items():
            assert walker.resolve({"$ref": ref}), f"{name}: {tag} -> {ref}"
    assert undocumented == []


# -- structure -------------------------------------------------------------------------------


def test_root_must_be_an_object():
    assert validate([]) == [err(ROOT, "expected object, got array")]


def test_unknown_key_is_refused_with_its_path():
    doc = put(door(), "readers[0].pins.d0", 4)
    assert validate(doc) == [
        err("readers[0].pins.d0", "unknown key 'd0' (allowed here: cs, rst, irq)")
    ]


def test_unknown_top_level_key_is_refused():
    [problem] = validate(door(relay_pin=26))
    assert problem.path == "relay_pin"
    assert problem.level == ERROR
    assert problem.reason.startswith(
        "unknown key 'relay_pin' (allowed here: name, description, hal"
    )


def test_missing_required_key():
    assert validate(drop(door(), "hal")) == [err("hal", "required key missing")]
    assert validate(drop(door(), "readers[0].pins.cs")) == [
        err("readers[0].pins.cs", "required key missing")
    ]


@pytest.mark.parametrize(
    "path, value, reason",
    [
        ("relays[0].pin", "26", "expected integer, got string"),
        ("relays[0].pin", 26.0, "expected integer, got number"),
        ("relays[0].pin", True, "expected integer, got boolean"),
        ("relays[0].active_high", 1, "expected boolean, got integer"),
        ("leds", [], "expected object, got array"),
        ("readers", "in", "expected array, got string"),
        ("buses.spi", [], "expected object, got array"),
    ],
)
def test_wrong_type(path, value, reason):
    assert validate(put(door(), path, value)) == [err(path, reason)]


def test_value_outside_its_enum():
    assert validate(put(door(), "chip", "esp8266")) == [
        err("chip", 'must be one of "esp32", "esp32s3", got "esp8266"')
    ]
    assert validate(put(door(), "relays[0].initial", "on")) == [
        err("relays[0].initial", 'must be one of "off", got "on"')
    ]


def test_value_outside_its_range():
    assert validate(put(door(), "relays[0].pulse_ms", 10)) == [
        err("relays[0].pulse_ms", "must be at least 50, got 10")
    ]


def test_unknown_reader_type_names_the_choices():
    assert validate(put(door(), "readers[0].type", "rc522")) == [
        err(
            "readers[0].type",
            'must be one of "mfrc522", "pn532", "wiegand26", "wiegand34", got "rc522"',
        )
    ]


def test_keys_depend_on_the_reader_type():
    # a Wiegand reader has d0/d1 and no bus
    doc = put(door(), "readers[0].type", "wiegand26")
    assert validate(doc) == [
        err("readers[0].bus", "unknown key 'bus' (allowed here: type, reader, pins, keypad)"),
        err("readers[0].pins.cs", "unknown key 'cs' (allowed here: d0, d1)"),
        err("readers[0].pins.d0", "required key missing"),
        err("readers[0].pins.d1", "required key missing"),
    ]


def test_too_many_readers():
    doc = door()
    doc["readers"] = doc["readers"] * 3
    assert err("readers", "allows at most 2 item(s), has 3") in validate(doc)


# -- pins ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gpio", range(6, 12))
def test_flash_pins_are_refused_on_esp32(gpio):
    assert validate(put(door(), "readers[0].pins.cs", gpio)) == [
        err(
            "readers[0].pins.cs",
            f"GPIO {gpio} is wired to the module's SPI flash (GPIO 6-11 on the esp32) "
            "and cannot be used",
        )
    ]


@pytest.mark.parametrize(
    "path",
    [
        "relays[0].pin",
        "readers[0].pins.cs",
        "readers[0].pins.rst",
        "buses.spi.sck",
        "buses.spi.mosi",
        "leds.green",
        "leds.red",
        "buzzer.pin",
    ],
)
def test_input_only_pins_cannot_be_outputs_on_esp32(path):
    doc = door(leds={}, buzzer={"pin": 4})
    doc = put(doc, path, 36)
    assert validate(doc) == [
        err(path, "GPIO 36 is input-only on the esp32 (GPIO 34-39) and cannot drive an output")
    ]


@pytest.mark.parametrize("path", ["buses.i2c.sda", "buses.i2c.scl", "readers[0].pins.reset"])
def test_i2c_lines_and_pn532_reset_need_an_output_pin(path):
    doc = put(canteen(), "readers[0].pins", {})
    doc = put(doc, path, 39)
    assert validate(doc) == [
        err(path, "GPIO 39 is input-only on the esp32 (GPIO 34-39) and cannot drive an output")
    ]


@pytest.mark.parametrize(
    "doc, path",
    [
        (door(), "buses.spi.miso"),
        (put(canteen(), "readers[0].pins", {}), "readers[0].pins.irq"),
        (turnstile(), "readers[0].pins.d0"),
        (turnstile(), "passage_sensors[0].pin"),
    ],
)
def test_input_only_pins_are_fine_as_inputs(doc, path):
    assert validate(put(doc, path, 38)) == []


@pytest.mark.parametrize(
    "chip, gpio",
    [("esp32", n) for n in (0, 2, 5, 12, 15)] + [("esp32s3", n) for n in (0, 3, 45, 46)],
)
def test_strapping_pins_are_warned(chip, gpio):
    doc = door() if chip == "esp32" else s3()
    pins = "0, 2, 5, 12, 15" if chip == "esp32" else "0, 3, 45, 46"
    assert validate(put(doc, "relays[0].pin", gpio)) == [
        warn(
            "relays[0].pin",
            f"GPIO {gpio} is a strapping pin of the {chip} ({pins}): what is wired to it can "
            "change how the board boots",
        )
    ]


def test_a_pin_used_twice_is_refused_at_both_paths():
    doc = door(leds={"green": 26})
    assert validate(doc) == [
        err("relays[0].pin", "GPIO 26 is also used by leds.green"),
        err("leds.green", "GPIO 26 is also used by relays[0].pin"),
    ]


def test_a_pin_used_three_times_names_the_other_two():
    doc = door(leds={"green": 26}, buzzer={"pin": 26})
    assert err("buzzer.pin", "GPIO 26 is also used by relays[0].pin, leds.green") in validate(doc)


@pytest.mark.parametrize("gpio", [-1, 20, 24, 28, 31, 40, 48])
def test_pins_outside_the_esp32_are_refused(gpio):
    assert validate(put(door(), "relays[0].pin", gpio)) == [
        err("relays[0].pin", f"GPIO {gpio} does not exist on the esp32 (it has GPIO {ESP32_PINS})")
    ]


@pytest.mark.parametrize("gpio", [22, 25, 49])
def test_pins_outside_the_esp32s3_are_refused(gpio):
    assert validate(put(s3(), "relays[0].pin", gpio)) == [
        err("relays[0].pin", f"GPIO {gpio} does not exist on the esp32s3 (it has GPIO {S3_PINS})")
    ]


def test_esp32s3_pins_above_39_and_34_to_39_are_usable_outputs():
    # no input-only pins on the S3; 38-42, 47, 48 are plain GPIOs
    doc = s3(leds={"green": 38, "red": 48}, buzzer={"pin": 47})
    doc = put(doc, "readers[0].pins.rst", 39)
    assert validate(doc) == []
    assert validate(put(s3(), "relays[0].pin", 35)) == []  # quad/no PSRAM: 33-37 are free


@pytest.mark.parametrize("gpio", range(26, 33))
def test_esp32s3_flash_pins_are_refused(gpio):
    assert validate(put(s3(), "relays[0].pin", gpio)) == [
        err(
            "relays[0].pin",
            f"GPIO {gpio} is wired to the module's SPI flash (GPIO 26-32 on the esp32s3) "
            "and cannot be used",
        )
    ]


@pytest.mark.parametrize("gpio", range(33, 38))
def test_esp32s3_octal_psram_pins_are_refused(gpio):
    assert validate(put(s3(psram="octal"), "relays[0].pin", gpio)) == [
        err(
            "relays[0].pin",
            f"GPIO {gpio} is taken by the octal PSRAM/flash (GPIO 33-37 with psram 'octal') "
            "and cannot be used",
        )
    ]


def test_esp32_quad_psram_takes_16_and_17():
    assert validate(put(door(), "relays[0].pin", 16)) == []
    assert validate(put(door(psram="quad"), "relays[0].pin", 17)) == [
        err(
            "relays[0].pin",
            "GPIO 17 is taken by the quad PSRAM/flash (GPIO 16-17 with psram 'quad') "
            "and cannot be used",
        )
    ]


def test_esp32_has_no_octal_psram():
    assert validate(door(psram="octal")) == [
        err("psram", "the esp32 has no octal PSRAM: use 'none' or 'quad'")
    ]


@pytest.mark.parametrize(
    "chip, gpio, what",
    [("esp32", 1, "UART0 TX"), ("esp32", 3, "UART0 RX"), ("esp32s3", 19, "USB D-"),
     ("esp32s3", 44, "UART0 RX")],
)  # fmt: skip
def test_console_pins_are_warned(chip, gpio, what):
    doc = door() if chip == "esp32" else s3()
    assert validate(put(doc, "relays[0].pin", gpio)) == [
        warn("relays[0].pin", f"GPIO {gpio} is {what}, which the REPL, mpremote and esptool use")
    ]


def test_no_internal_pull_on_esp32_input_only_pins():
    doc = put(turnstile(), "passage_sensors[0]", {"pin": 37, "reader": "in", "pull": "up"})
    assert validate(doc) == [
        err(
            "passage_sensors[0].pull",
            "GPIO 37 has no internal pull resistor (GPIO 34-39): use 'none' and an external one",
        )
    ]


# -- buses -----------------------------------------------------------------------------------


def test_reader_on_an_undeclared_bus():
    assert validate(put(door(), "readers[0].bus", "vspi")) == [
        err("readers[0].bus", "no bus named 'vspi' under buses (declared: 'spi')"),
        warn("buses.spi", "no reader or display uses this bus"),
    ]


def test_reader_on_the_wrong_kind_of_bus():
    doc = canteen()
    doc["readers"][0] = {"type": "mfrc522", "reader": "canteen", "bus": "i2c", "pins": {"cs": 5}}
    problems = validate(doc)
    assert err("readers[0].bus", "a mfrc522 needs an spi bus, 'i2c' is an i2c bus") in problems
    assert [p for p in problems if p.level == ERROR] == [
        err("readers[0].bus", "a mfrc522 needs an spi bus, 'i2c' is an i2c bus")
    ]


def test_i2c_address_used_twice_on_one_bus():
    doc = put(canteen(), "readers[0].address", 60)
    assert validate(doc) == [
        err("display.address", "I2C address 0x3c on bus 'i2c' is also used by readers[0]")
    ]


def test_unused_bus_is_warned():
    doc = door()
    doc["buses"]["i2c"] = {"type": "i2c", "sda": 32, "scl": 33}
    assert validate(doc) == [warn("buses.i2c", "no reader or display uses this bus")]


def test_bus_with_an_unknown_type():
    assert validate(put(door(), "buses.spi.type", "uart")) == [
        err("buses.spi.type", 'must be one of "spi", "i2c", got "uart"')
    ]


# -- mode ------------------------------------------------------------------------------------


def test_reader_names_are_unique():
    doc = turnstile()
    doc["readers"][1]["reader"] = "in"
    problems = validate(doc)
    assert err("readers[1].reader", "reader name 'in' is already used by readers[0].reader") in (
        problems
    )
    assert err("readers", "a turnstile needs an 'in' and an 'out' reader") in problems


def test_canteen_reader_is_named_canteen():
    assert validate(put(canteen(), "readers[0].reader", "in")) == [
        err("readers[0].reader", "a canteen board's reader is named 'canteen'")
    ]


def test_door_needs_a_relay():
    assert validate(door(relays=[])) == [err("relays", "a door needs at least one relay")]


def test_turnstile_relay_needs_its_direction():
    assert validate(drop(turnstile(), "relays[1].reader")) == [
        err("relays[1].reader", "required on a turnstile: the direction this relay releases")
    ]


def test_two_relays_for_one_direction():
    assert validate(put(turnstile(), "relays[1].reader", "in")) == [
        err("relays[1].reader", "'in' is already served by relays[0].reader")
    ]


# -- robustness ------------------------------------------------------------------------------


def _paths(node: Any, prefix: str = "") -> list[str]:
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, sub in items:
        path = (
            f"{prefix}[{key}]" if isinstance(key, int) else (f"{prefix}.{key}" if prefix else key)
        )
        out.append(path)
        if isinstance(sub, dict | list):
            out.extend(_paths(sub, path))
    return out


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 60)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["esp32", "spi", "i2c", "in", "mfrc522", "pn532", "off", "canteen"])
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_SHIPPED = [load_board(p) for p in BOARDS]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_validate_never_raises_on_any_mutation(data):
    doc = data.draw(st.sampled_from(_SHIPPED))
    path = data.draw(st.sampled_from(_paths(doc)))
    problems = validate(put(doc, path, data.draw(_json)))
    assert all(isinstance(p, Problem) and p.level in (ERROR, WARNING) for p in problems)


# -- files and the CLI -----------------------------------------------------------------------


def test_invalid_json_names_file_line_and_column(tmp_path):
    bad = tmp_path / "board.json"
    bad.write_text('{"hal": "esp32",\n  "chip": }\n')
    with pytest.raises(BoardConfigError) as info:
        load_board(bad)
    assert (info.value.line, info.value.col) == (2, 11)
    assert str(info.value) == (f"{bad}:2:11: invalid JSON: Expecting value (line 2, column 11)")
    assert check_file(bad) == [err(ROOT, "invalid JSON: Expecting value (line 2, column 11)")]


def test_duplicate_keys_are_refused(tmp_path):
    bad = tmp_path / "board.json"
    bad.write_text('{"hal": "esp32", "hal": "sim"}')
    with pytest.raises(BoardConfigError, match="duplicate key 'hal'"):
        load_board(bad)


def test_missing_file(tmp_path):
    with pytest.raises(BoardConfigError, match="no such file"):
        load_board(tmp_path / "nope.json")


def test_cli_valid_boards_exit_0(capsys):
    assert main(["validate-board", *map(str, BOARDS)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{p}: ok (0 error(s), 0 warning(s))" for p in BOARDS]


def test_cli_skips_the_schema_so_a_glob_works(capsys):
    schema = str(REPO / "board-configs" / "schema.json")
    assert main(["validate-board", schema, str(BOARDS[0])]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{schema}: skipped (the schema, not a board)"


def test_cli_prints_path_and_reason_and_exits_1_on_errors(tmp_path, capsys):
    bad = tmp_path / "door.json"
    bad.write_text(json.dumps(put(door(), "readers[0].pins.cs", 7)))
    good = tmp_path / "ok.json"
    good.write_text(json.dumps(door()))
    assert main(["validate-board", str(good), str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{good}: ok (0 error(s), 0 warning(s))",
        f"{bad}: readers[0].pins.cs: error: GPIO 7 is wired to the module's SPI flash "
        "(GPIO 6-11 on the esp32) and cannot be used",
        f"{bad}: INVALID (1 error(s), 0 warning(s))",
    ]


def test_cli_warnings_alone_exit_0(tmp_path, capsys):
    f = tmp_path / "door.json"
    f.write_text(json.dumps(put(door(), "relays[0].pin", 12)))
    assert main(["validate-board", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"{f}: relays[0].pin: warning: GPIO 12 is a strapping pin" in out


def test_cli_invalid_json_exits_1(tmp_path, capsys):
    f = tmp_path / "board.json"
    f.write_text("{")
    assert main(["validate-board", str(f)]) == 1
    assert "(root): error: invalid JSON: Expecting property name enclosed in double quotes" in (
        capsys.readouterr().out
    )


def test_console_script_exit_codes(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(door(colour="red")))
    cmd = [sys.executable, "-m", "tools.cli", "validate-board"]
    ok = subprocess.run([*cmd, str(BOARDS[0])], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    failed = subprocess.run([*cmd, str(bad)], cwd=REPO, capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"{bad}: colour: error: unknown key 'colour'" in failed.stdout
