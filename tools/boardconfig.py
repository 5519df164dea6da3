"""Board configuration (board.json) validator.

A board.json tells the firmware how one ESP32 board is wired. board-configs/schema.json describes
the keys; this module checks a document in two passes:

1. structure, by interpreting schema.json (a subset of JSON Schema, see its description): unknown
   keys, missing keys, wrong types, values out of their enum or range;
2. rules that need the chip: every GPIO number must exist on the chip, must not be a flash/PSRAM
   pin, must be able to drive an output where one is needed, must be used once only; strapping
   and serial-console pins are warned about; buses, reader names and the mode must fit together.

Every finding is a Problem with the path of the offending value ("readers[0].pins.cs"). The pin
facts and their sources are in docs/board-configs.md.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BOARD_CONFIGS = REPO / "board-configs"
SCHEMA_PATH = BOARD_CONFIGS / "schema.json"

ERROR = "error"
WARNING = "warning"
ROOT = "(root)"


@dataclass(frozen=True)
class Problem:
    path: str
    level: str  # ERROR or WARNING
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.level}: {self.reason}"


class BoardConfigError(ValueError):
    """A board configuration file that cannot be read as JSON at all."""

    def __init__(self, path: Path, detail: str, line: int | None = None, col: int | None = None):
        self.path, self.detail, self.line, self.col = path, detail, line, col
        where = f"{path}:{line}:{col}" if line is not None else str(path)
        super().__init__(f"{where}: {detail}")


# -- chip facts (sources in docs/board-configs.md) ----------------------------------------------


@dataclass(frozen=True)
class Chip:
    name: str
    gpios: frozenset[int]  # the GPIO numbers the chip has
    gpio_text: str  # the same, for messages
    flash: frozenset[int]  # connected to the module's SPI flash (and PSRAM): never usable
    flash_text: str
    input_only: frozenset[int]  # no output driver, no internal pull resistors
    strapping: frozenset[int]
    console: dict[int, str]  # pins of the serial console / USB the technician needs
    psram: dict[str, frozenset[int]]  # extra pins the PSRAM takes, by the "psram" value


def _span(*ranges: tuple[int, int]) -> frozenset[int]:
    return frozenset(n for lo, hi in ranges for n in range(lo, hi + 1))


CHIPS = {
    "esp32": Chip(
        name="esp32",
        gpios=_span((0, 19), (21, 23), (25, 27), (32, 39)),
        gpio_text="0-19, 21-23, 25-27, 32-39",
        flash=_span((6, 11)),
        flash_text="GPIO 6-11",
        input_only=_span((34, 39)),
        strapping=frozenset({0, 2, 5, 12, 15}),
        console={1: "UART0 TX", 3: "UART0 RX"},
        psram={"quad": frozenset({16, 17})},
    ),
    "esp32s3": Chip(
        name="esp32s3",
        gpios=_span((0, 21), (26, 48)),
        gpio_text="0-21, 26-48",
        flash=_span((26, 32)),
        flash_text="GPIO 26-32",
        input_only=frozenset(),
        strapping=frozenset({0, 3, 45, 46}),
        console={19: "USB D-", 20: "USB D+", 43: "UART0 TX", 44: "UART0 RX"},
        psram={"octal": _span((33, 37))},
    ),
}
PSRAM_TEXT = {"quad": "GPIO 16-17", "octal": "GPIO 33-37"}

# Which bus type each bus user needs.
BUS_TYPE = {"mfrc522": "spi", "pn532": "i2c", "ssd1306": "i2c"}


# -- pass 1: structure, by interpreting schema.json --------------------------------------------

ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "default", "examples"}
KEYWORDS = {
    "$ref", "$defs", "type", "enum", "const", "minimum", "maximum", "pattern", "properties",
    "required", "additionalProperties", "propertyNames", "items", "minItems", "maxItems",
    "x-pin", "x-discriminator",
}  # fmt: skip

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
    "null": type(None),
}
_JSON_NAME = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _json_type(value: Any) -> str:
    return _JSON_NAME.get(type(value), type(value).__name__)


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return type(value) is int  # bool is a subclass of int in Python, not in JSON
    return isinstance(value, _TYPES[name])


def _show(value: Any) -> str:
    return json.dumps(value)


def _join(path: str, key: str) -> str:
    return key if path == ROOT else f"{path}.{key}"


@dataclass
class _Pin:
    path: str
    gpio: int
    need: str  # "output", "input" or "io"


class _Walker:
    def __init__(self, schema: dict) -> None:
        self.root = schema
        self.problems: list[Problem] = []
        self.pins: list[_Pin] = []

    def error(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, ERROR, reason))

    def resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"schema: only local $ref is supported, got {ref!r}")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            schema = target
        return schema

    def check(self, value: Any, schema: dict, path: str) -> None:
        schema = self.resolve(schema)
        if "const" in schema and value != schema["const"]:
            self.error(path, f"must be {_show(schema['const'])}, got {_show(value)}")
            return
        if "enum" in schema and not any(
            value == e and type(value) is type(e) for e in schema["enum"]
        ):
            choices = ", ".join(_show(e) for e in schema["enum"])
            self.error(path, f"must be one of {choices}, got {_show(value)}")
            return
        types = schema.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else types
            if not any(_is_type(value, n) for n in names):
                self.error(path, f"expected {' or '.join(names)}, got {_json_type(value)}")
                return
        if "minimum" in schema and value < schema["minimum"]:
            self.error(path, f"must be at least {schema['minimum']}, got {_show(value)}")
        if "maximum" in schema and value > schema["maximum"]:
            self.error(path, f"must be at most {schema['maximum']}, got {_show(value)}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            self.error(path, f"{_show(value)} does not match {schema['pattern']}")
        if "x-pin" in schema:
            self.pins.append(_Pin(path, value, schema["x-pin"]))
        if "x-discriminator" in schema:
            self._discriminated(value, schema["x-discriminator"], path)
        if isinstance(value, dict) and ("properties" in schema or "additionalProperties" in schema):
            self._object(value, schema, path)
        if isinstance(value, list):
            self._array(value, schema, path)

    def _discriminated(self, value: dict, disc: dict, path: str) -> None:
        key, mapping = disc["propertyName"], disc["mapping"]
        choices = ", ".join(_show(k) for k in mapping)
        if key not in value:
            self.error(_join(path, key), f"required key missing (one of {choices})")
            return
        tag = value[key]
        if not isinstance(tag, str) or tag not in mapping:
            self.error(_join(path, key), f"must be one of {choices}, got {_show(tag)}")
            return
        self.check(value, {"$ref": mapping[tag]}, path)

    def _object(self, value: dict, schema: dict, path: str) -> None:
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        for key, item in value.items():
            sub = _join(path, key)
            if names is not None and not re.search(names["pattern"], key):
                self.error(sub, f"name {key!r} does not match {names['pattern']}")
            if key in props:
                self.check(item, props[key], sub)
            elif extra is False:
                allowed = ", ".join(props) or "none"
                self.error(sub, f"unknown key {key!r} (allowed here: {allowed})")
            elif isinstance(extra, dict):
                self.check(item, extra, sub)
        for key in schema.get("required", []):
            if key not in value:
                self.error(_join(path, key), "required key missing")

    def _array(self, value: list, schema: dict, path: str) -> None:
        if "minItems" in schema and len(value) < schema["minItems"]:
            self.error(path, f"needs at least {schema['minItems']} item(s), has {len(value)}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.error(path, f"allows at most {schema['maxItems']} item(s), has {len(value)}")
        if "items" in schema:
            for i, item in enumerate(value):
                self.check(item, schema["items"], f"{path}[{i}]")


def schema_keywords(schema: dict) -> Iterator[str]:
    """Every keyword used anywhere in the schema (tests check they are all understood)."""
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        for key, sub in node.items():
            yield key
            if key in ("properties", "$defs"):
                stack.extend(sub.values())
            elif key in ("items", "additionalProperties", "propertyNames"):
                stack.append(sub)


# -- pass 2: rules that need the chip ----------------------------------------------------------


def _dicts(value: Any) -> list[tuple[int, dict]]:
    return (
        [(i, v) for i, v in enumerate(value) if isinstance(v, dict)]
        if isinstance(value, list)
        else []
    )


def _check_pins(doc: dict, pins: list[_Pin], out: list[Problem]) -> None:
    name = doc.get("chip")
    chip = CHIPS.get(name) if isinstance(name, str) else None
    if chip is None:
        return  # the structure pass reported the chip
    psram = doc.get("psram", "none")
    reserved = chip.psram.get(psram, frozenset()) if isinstance(psram, str) else frozenset()
    if chip.name == "esp32" and psram == "octal":
        out.append(Problem("psram", ERROR, "the esp32 has no octal PSRAM: use 'none' or 'quad'"))
    usable: list[_Pin] = []
    for pin in pins:
        n = pin.gpio
        if n not in chip.gpios:
            out.append(
                Problem(
                    pin.path,
                    ERROR,
                    f"GPIO {n} does not exist on the {chip.name} (it has GPIO {chip.gpio_text})",
                )
            )
            continue
        usable.append(pin)
        if n in chip.flash:
            out.append(
                Problem(
                    pin.path,
                    ERROR,
                    f"GPIO {n} is wired to the module's SPI flash "
                    f"({chip.flash_text} on the {chip.name}) and cannot be used",
                )
            )
        elif n in reserved:
            out.append(
                Problem(
                    pin.path,
                    ERROR,
                    f"GPIO {n} is taken by the {psram} PSRAM/flash "
                    f"({PSRAM_TEXT[psram]} with psram '{psram}') and cannot be used",
                )
            )
        if n in chip.input_only and pin.need in ("output", "io"):
            out.append(
                Problem(
                    pin.path,
                    ERROR,
                    f"GPIO {n} is input-only on the {chip.name} "
                    f"(GPIO 34-39) and cannot drive an output",
                )
            )
        if n in chip.strapping and not pin.path.startswith("eth."):
            # (The Ethernet PHY's pins are soldered by the board's maker, who designed around
            # the strapping: e.g. the WT32-ETH01's oscillator on GPIO 0 is off until `power`.)
            pins_text = ", ".join(str(p) for p in sorted(chip.strapping))
            out.append(
                Problem(
                    pin.path,
                    WARNING,
                    f"GPIO {n} is a strapping pin of the {chip.name} "
                    f"({pins_text}): what is wired to it can change how the board boots",
                )
            )
        if n in chip.console:
            out.append(
                Problem(
                    pin.path,
                    WARNING,
                    f"GPIO {n} is {chip.console[n]}, which the REPL, mpremote and esptool use",
                )
            )
    by_gpio: dict[int, list[str]] = {}
    for pin in usable:
        by_gpio.setdefault(pin.gpio, []).append(pin.path)
    for pin in usable:
        others = [p for p in by_gpio[pin.gpio] if p != pin.path]
        if others:
            out.append(
                Problem(pin.path, ERROR, f"GPIO {pin.gpio} is also used by {', '.join(others)}")
            )
    if chip.name == "esp32":
        for i, sensor in _dicts(doc.get("passage_sensors")):
            pin = sensor.get("pin")
            if type(pin) is int and pin in chip.input_only and sensor.get("pull", "none") != "none":
                out.append(
                    Problem(
                        f"passage_sensors[{i}].pull",
                        ERROR,
                        f"GPIO {sensor['pin']} has no "
                        "internal pull resistor (GPIO 34-39): use 'none' and an external one",
                    )
                )


def _check_buses(doc: dict, out: list[Problem]) -> None:
    buses = doc.get("buses") if isinstance(doc.get("buses"), dict) else {}
    users: list[tuple[str, dict]] = [(f"readers[{i}]", r) for i, r in _dicts(doc.get("readers"))]
    if isinstance(doc.get("display"), dict):
        users.append(("display", doc["display"]))
    used = {user.get("bus") for _, user in users if isinstance(user.get("bus"), str)}
    addresses: dict[tuple[str, int], str] = {}
    for path, user in users:
        kind = BUS_TYPE.get(user["type"]) if isinstance(user.get("type"), str) else None
        name = user.get("bus")
        if kind is None or not isinstance(name, str):
            continue
        if name not in buses:
            declared = ", ".join(repr(b) for b in buses) or "none"
            out.append(
                Problem(
                    f"{path}.bus",
                    ERROR,
                    f"no bus named {name!r} under buses (declared: {declared})",
                )
            )
            continue
        bus = buses[name]
        if not isinstance(bus, dict) or bus.get("type") not in ("spi", "i2c"):
            continue  # the structure pass reported it
        if bus["type"] != kind:
            out.append(
                Problem(
                    f"{path}.bus",
                    ERROR,
                    f"a {user['type']} needs an {kind} bus, {name!r} is an {bus['type']} bus",
                )
            )
            continue
        if kind == "i2c":
            addr = user.get("address", 36 if user["type"] == "pn532" else 60)
            if type(addr) is not int:
                continue
            if (name, addr) in addresses:
                out.append(
                    Problem(
                        f"{path}.address",
                        ERROR,
                        f"I2C address {addr:#04x} on bus {name!r} "
                        f"is also used by {addresses[(name, addr)]}",
                    )
                )
            else:
                addresses[(name, addr)] = path
    if isinstance(doc.get("readers"), list):
        for name in buses:
            if name not in used:
                out.append(Problem(f"buses.{name}", WARNING, "no reader or display uses this bus"))


def _check_mode(doc: dict, out: list[Problem]) -> None:
    mode = doc.get("mode")
    readers = _dicts(doc.get("readers"))
    names: dict[str, str] = {}
    for i, r in readers:
        name = r.get("reader")
        if not isinstance(name, str):
            continue
        path = f"readers[{i}].reader"
        if name in names:
            out.append(
                Problem(path, ERROR, f"reader name {name!r} is already used by {names[name]}")
            )
            continue
        names[name] = path
        if mode == "canteen" and name != "canteen":
            out.append(Problem(path, ERROR, "a canteen board's reader is named 'canteen'"))
        if mode in ("door", "turnstile") and name == "canteen":
            out.append(Problem(path, ERROR, f"a {mode}'s readers are named 'in' or 'out'"))
    relays = _dicts(doc.get("relays"))
    if mode in ("door", "turnstile") and isinstance(doc.get("relays", []), list) and not relays:
        out.append(Problem("relays", ERROR, f"a {mode} needs at least one relay"))
    if mode == "turnstile":
        if isinstance(doc.get("readers"), list) and sorted(names) != ["in", "out"]:
            out.append(Problem("readers", ERROR, "a turnstile needs an 'in' and an 'out' reader"))
        if relays and len(relays) != 2:
            out.append(Problem("relays", ERROR, "a turnstile needs one relay per direction (2)"))
        for i, relay in relays:
            if "reader" not in relay:
                out.append(
                    Problem(
                        f"relays[{i}].reader",
                        ERROR,
                        "required on a turnstile: the direction this relay releases",
                    )
                )
    for key in ("relays", "passage_sensors"):
        seen: dict[str, str] = {}
        for i, item in _dicts(doc.get(key)):
            direction = item.get("reader")
            if not isinstance(direction, str):
                continue
            path = f"{key}[{i}].reader"
            if direction in seen:
                out.append(
                    Problem(path, ERROR, f"{direction!r} is already served by {seen[direction]}")
                )
            else:
                seen[direction] = path
            if names and direction not in names:
                out.append(Problem(path, ERROR, f"no reader named {direction!r} on this board"))


# The ESP32's RMII pins are fixed by its IO_MUX (ESP32 Technical Reference Manual, EMAC; the
# ESP-IDF Ethernet guide): with "eth" configured nothing else may use them.
RMII_PINS = {19: "TXD0", 21: "TX_EN", 22: "TXD1", 25: "RXD0", 26: "RXD1", 27: "CRS_DV"}
REF_CLK_PINS = {"in": frozenset({0}), "out": frozenset({0, 16, 17})}


def _check_eth(doc: dict, pins: list[_Pin], out: list[Problem]) -> None:
    eth = doc.get("eth")
    if not isinstance(eth, dict):
        return
    chip = doc.get("chip")
    if chip != "esp32":
        if isinstance(chip, str) and chip in CHIPS:
            out.append(
                Problem(
                    "eth",
                    ERROR,
                    f"the {chip} has no Ethernet MAC (RMII): wired Ethernet needs an esp32",
                )
            )
        return
    for pin in pins:
        if pin.gpio in RMII_PINS:
            out.append(
                Problem(
                    pin.path,
                    ERROR,
                    f"GPIO {pin.gpio} is the Ethernet RMII {RMII_PINS[pin.gpio]} on the esp32 "
                    "(fixed, in use while eth is configured)",
                )
            )
    mode = eth.get("ref_clk_mode", "in")
    clk = eth.get("ref_clk")
    if type(clk) is int and isinstance(mode, str) and clk not in REF_CLK_PINS.get(mode, (clk,)):
        allowed = ", ".join(str(n) for n in sorted(REF_CLK_PINS[mode]))
        out.append(
            Problem(
                "eth.ref_clk",
                ERROR,
                f"the RMII reference clock can come {mode} only on GPIO {allowed} of the esp32",
            )
        )


def validate(doc: Any, schema: dict | None = None) -> list[Problem]:
    """All problems of a board.json document; it is usable if none has level "error"."""
    walker = _Walker(schema if schema is not None else load_schema())
    walker.check(doc, walker.root, ROOT)
    problems = walker.problems
    if isinstance(doc, dict):
        _check_pins(doc, walker.pins, problems)
        _check_buses(doc, problems)
        _check_mode(doc, problems)
        _check_eth(doc, walker.pins, problems)
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.level == ERROR]


# -- files -----------------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def load_board(path: Path | str) -> Any:
    """Parse a board.json file. Raises BoardConfigError naming the file (and line:column for
    invalid JSON); does not validate (call validate on the result)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BoardConfigError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BoardConfigError(path, f"cannot read: {exc}") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise BoardConfigError(
            path,
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            exc.lineno,
            exc.colno,
        ) from None
    except _DuplicateKey as exc:
        # the firmware's json.load would silently keep the last one: refuse the ambiguity
        raise BoardConfigError(path, f"invalid JSON: duplicate key {exc.args[0]!r}") from None


def check_file(path: Path | str) -> list[Problem]:
    """load_board + validate; a file that cannot be parsed is one error at the root."""
    try:
        doc = load_board(path)
    except BoardConfigError as exc:
        return [Problem(ROOT, ERROR, exc.detail)]
    return validate(doc)


def board_files(root: Path = BOARD_CONFIGS) -> list[Path]:
    return sorted(p for p in root.glob("*.json") if p.name != "schema.json")


# -- `qadam validate-board` ------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="board.json files")


def run(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        if path.resolve() == SCHEMA_PATH.resolve():
            print(f"{path}: skipped (the schema, not a board)")  # `board-configs/*.json` has it
            continue
        problems = check_file(path)
        for problem in problems:
            print(f"{path}: {problem}")
        n_err = len(errors(problems))
        n_warn = len(problems) - n_err
        failed |= n_err > 0
        verdict = "INVALID" if n_err else "ok"
        print(f"{path}: {verdict} ({n_err} error(s), {n_warn} warning(s))")
    return 1 if failed else 0
