"""Turn an uploaded file into a header and numbered rows of text cells.

CSV: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1251 (what Excel "CSV" saves on
a Russian-locale Windows); the delimiter (``;``, ``,`` or tab) is taken from the header line.
XLSX: the first sheet. Row numbers are the ones the user sees: the header is row 1 in a file
whose first line is the header. Blank rows are skipped.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
MAX_COLUMNS = 64


class FileProblem(Exception):
    """The file as a whole cannot be read; ``status`` is 413 (too large) or 422."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


@dataclass
class Table:
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (row number, cells)
    format: str  # "xlsx" or "csv"
    header_row: int = 1
    encoding: str = ""
    delimiter: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _too_many() -> FileProblem:
    return FileProblem(413, f"more than {MAX_ROWS} data rows: split the file")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value).strip()


def _check_text(s: str) -> None:
    if "\x00" in s:
        raise FileProblem(422, "the file contains NUL characters: not a text CSV")


def read_table(data: bytes) -> Table:
    if len(data) > MAX_BYTES:
        raise FileProblem(413, f"file larger than {MAX_BYTES // (1024 * 1024)} MB")
    if not data.strip():
        raise FileProblem(422, "the file is empty")
    if data.startswith(b"PK\x03\x04"):
        return _read_xlsx(data)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise FileProblem(422, "old Excel .xls is not supported: save as .xlsx or CSV")
    return _read_csv(data)


def _read_xlsx(data: bytes) -> Table:
    from openpyxl import load_workbook  # imported on use: only XLSX uploads need it

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise FileProblem(422, f"not a readable .xlsx file ({type(e).__name__})") from None
    try:
        if not wb.worksheets:
            raise FileProblem(422, "the workbook has no sheets")
        ws = wb.worksheets[0]
        header: list[str] | None = None
        header_row = 1
        rows: list[tuple[int, list[str]]] = []
        for n, values in enumerate(ws.iter_rows(max_col=MAX_COLUMNS, values_only=True), start=1):
            cells = [_cell(v) for v in values]
            if not any(cells):
                continue
            if header is None:
                header, header_row = cells, n
                continue
            if len(rows) >= MAX_ROWS:
                raise _too_many()
            rows.append((n, cells))
    finally:
        wb.close()
    if header is None:
        raise FileProblem(422, "the first sheet is empty")
    for _, cells in rows:
        for c in cells:
            _check_text(c)
    return Table(header, rows, "xlsx", header_row)


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        encoding, body = "utf-8-sig", data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding, body = "utf-16", data
    else:
        encoding, body = "utf-8", data
    try:
        return body.decode("utf-16" if encoding == "utf-16" else "utf-8"), encoding
    except UnicodeDecodeError:
        if encoding != "utf-8":
            raise FileProblem(422, f"the file is not valid {encoding}") from None
    try:
        return data.decode("cp1251"), "cp1251"
    except UnicodeDecodeError:
        raise FileProblem(
            422, "cannot decode the file: it is neither UTF-8 nor Windows-1251 text"
        ) from None


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv(data: bytes) -> Table:
    text, encoding = _decode(data)
    _check_text(text)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delim = _delimiter(first)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    header: list[str] | None = None
    header_row = 1
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells_raw in reader:
            n = reader.line_num
            cells = [c.strip() for c in cells_raw[:MAX_COLUMNS]]
            if not any(cells):
                continue
            if header is None:
                header, header_row = cells, n
                continue
            if len(rows) >= MAX_ROWS:
                raise _too_many()
            rows.append((n, cells))
    except csv.Error as e:
        raise FileProblem(422, f"malformed CSV near line {reader.line_num}: {e}") from None
    if header is None:
        raise FileProblem(422, "the file has no header row")
    delim_name = {";": ";", ",": ",", "\t": "tab"}[delim]
    return Table(header, rows, "csv", header_row, encoding, delim_name)
