"""Report content (build.py's dicts) -> tables -> CSV, XLSX (openpyxl) or PDF (fpdf2).

PDF text uses DejaVu Sans (Debian fonts-dejavu-core), which covers Cyrillic and the Kazakh
letters; QADAM_REPORT_FONT / QADAM_REPORT_FONT_BOLD point elsewhere.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

Format = Literal["csv", "xlsx", "pdf"]
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}
FONT = os.environ.get("QADAM_REPORT_FONT", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FONT_BOLD = os.environ.get(
    "QADAM_REPORT_FONT_BOLD", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    money: set[int] = field(default_factory=set)  # column indexes holding "123.45" strings
    bold_last: bool = False  # the last row is a total
    widths: list[int] | None = None  # PDF relative column widths


@dataclass
class Document:
    title: str
    subtitle: list[str]
    tables: list[Table]
    filename: str


_MONEY_COLS = ["Cost, KZT", "Paid by family, KZT", "Subsidy, KZT"]


def _money_row(x: dict[str, Any]) -> list[Any]:
    return [x["cost"], x["paid"], x["subsidy"]]


def _status_line(meta: dict[str, Any] | None) -> str:
    if not meta:
        return "Status: live preview (not stored)"
    s = f"Status: {meta['status']}; generated {meta['generated_at']}"
    if meta.get("approved_at"):
        s += f"; approved {meta['approved_at']} by {meta.get('approved_by_name') or ''}".rstrip()
    return s


def document(content: dict[str, Any], meta: dict[str, Any] | None = None) -> Document:
    kind = content["kind"]
    if kind == "meals":
        return _meals_doc(content, meta)
    if kind == "attendance":
        return _attendance_doc(content, meta)
    if kind == "crosscheck":
        return _crosscheck_doc(content)
    if kind == "district_meals":
        return _district_doc(content)
    raise ValueError(f"unknown report kind {kind!r}")


def _school_lines(c: dict[str, Any]) -> list[str]:
    s = c["school"]
    district = f"District: {s['district']}; " if s.get("district") else ""
    return [f"School: {s['name']} ({s['id']}); {district}month {c['month']}"]


def _crosscheck_tables(x: dict[str, Any]) -> list[Table]:
    return [
        Table(
            f"Cross-check: meals recorded for pupils not on site ({len(x['fed_not_present'])})",
            ["Pupil", "Class", "Date", "Meals", "First meal"],
            [
                [r["name"], r["class"], r["date"], r["meals"], r["first_meal"]]
                for r in x["fed_not_present"]
            ],
            widths=[40, 12, 16, 10, 14],
        ),
        Table(
            f"Cross-check: eligible pupils present but not fed ({len(x['present_not_fed'])})",
            ["Pupil", "Class", "Category", "Date", "First in"],
            [
                [r["name"], r["class"], r["category"], r["date"], r["first_in"]]
                for r in x["present_not_fed"]
            ],
            widths=[40, 12, 20, 16, 14],
        ),
    ]


def _meals_doc(c: dict[str, Any], meta: dict[str, Any] | None) -> Document:
    t = c["total"]
    lines = Table(
        "Free and subsidised meals per pupil",
        ["Pupil", "Class", "Category", "Meals", *_MONEY_COLS],
        [[x["name"], x["class"], x["category"], x["quantity"], *_money_row(x)] for x in c["lines"]]
        + [["Total", "", "", t["quantity"], *_money_row(t)]],
        money={4, 5, 6},
        bold_last=True,
        widths=[44, 12, 26, 12, 20, 22, 20],
    )
    cats = Table(
        "Totals by category",
        ["Category", "Pupils", "Meals", *_MONEY_COLS],
        [[x["category"], x["pupils"], x["quantity"], *_money_row(x)] for x in c["by_category"]]
        + [["School total", t["pupils"], t["quantity"], *_money_row(t)]],
        money={3, 4, 5},
        bold_last=True,
        widths=[40, 14, 14, 22, 24, 22],
    )
    sub = _school_lines(c) + [_status_line(meta)]
    if t.get("unpriced"):
        sub.append(f"Warning: {t['unpriced']} meals could not be priced (no meal category).")
    if c.get("unknown_card_receipts"):
        sub.append(f"Meals for unknown cards (not in the lines): {c['unknown_card_receipts']}")
    return Document(
        "Monthly report: free and subsidised meals",
        sub,
        [cats, lines, *_crosscheck_tables(c["crosscheck"])],
        f"meals-{c['school']['id']}-{c['month']}",
    )


def _crosscheck_doc(c: dict[str, Any]) -> Document:
    return Document(
        "Meals vs presence cross-check",
        _school_lines(c) + [f"Anomalies: {c['anomalies']}"],
        _crosscheck_tables(c),
        f"crosscheck-{c['school']['id']}-{c['month']}",
    )


def _attendance_doc(c: dict[str, Any], meta: dict[str, Any] | None) -> Document:
    t = c["total"]
    summary = Table(
        "Attendance per person",
        ["Name", "Kind", "Class", "Days present", "Days late", "Late, min", "By QR", "By PIN"],
        [
            # by_qr/by_pin: passages without a card (D29-J); absent from reports made before
            [
                x["name"],
                x["kind"],
                x["class"],
                x["days_present"],
                x["days_late"],
                x["late_min"],
                x.get("by_qr", 0),
                x.get("by_pin", 0),
            ]
            for x in c["people"]
        ],  # fmt: skip
        widths=[44, 14, 12, 14, 12, 12, 10, 10],
    )
    days = Table(
        "Attendance by day (local time)",
        ["Name", "Kind", "Class", "Date", "First in", "Last out", "Passages", "Late, min"],
        [
            [
                x["name"],
                x["kind"],
                x["class"],
                x["date"],
                x["first_in"],
                x["last_out"],
                x["passages"],
                x["late_min"],
            ]
            for x in c["lines"]
        ],
        widths=[44, 14, 12, 18, 16, 16, 14, 14],
    )
    sub = _school_lines(c) + [
        f"School day starts {c['school']['day_start']}; people {t['people']},"
        f" present person-days {t['present_days']}, late {t['late_days']}",
        _status_line(meta),
    ]
    return Document(
        "Monthly attendance report: students and staff",
        sub,
        [summary, days],
        f"attendance-{c['school']['id']}-{c['month']}",
    )


def _district_doc(c: dict[str, Any]) -> Document:
    rows: list[list[Any]] = []
    for s in c["schools"]:
        for x in s["categories"]:
            rows.append([s["name"], x["category"], x["pupils"], x["quantity"], *_money_row(x)])
        st = s["total"]
        rows.append(
            [
                f"{s['name']} total",
                s["report_status"],
                st["pupils"],
                st["quantity"],
                *_money_row(st),
            ]  # fmt: skip
        )
    t = c["total"]
    schools = Table(
        "Schools",
        ["School", "Category / report", "Pupils", "Meals", *_MONEY_COLS],
        rows + [["District total", "", t["pupils"], t["quantity"], *_money_row(t)]],
        money={4, 5, 6},
        bold_last=True,
        widths=[40, 26, 12, 12, 20, 22, 20],
    )
    cats = Table(
        "District totals by category",
        ["Category", "Pupils", "Meals", *_MONEY_COLS],
        [[x["category"], x["pupils"], x["quantity"], *_money_row(x)] for x in c["by_category"]]
        + [["District total", t["pupils"], t["quantity"], *_money_row(t)]],
        money={3, 4, 5},
        bold_last=True,
        widths=[40, 14, 14, 22, 24, 22],
    )
    d = c["district"]
    return Document(
        "District report: free and subsidised meals",
        [f"District: {d['name']} ({d['region']}); month {c['month']}"],
        [cats, schools],
        f"meals-district-{d['id']}-{c['month']}",
    )


# ---- formats --------------------------------------------------------------------------------


def to_csv(doc: Document) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([doc.title])
    for s in doc.subtitle:
        w.writerow([s])
    for t in doc.tables:
        w.writerow([])
        w.writerow([t.title])
        w.writerow(t.columns)
        w.writerows(t.rows)
    # BOM: Excel opens UTF-8 CSV (Cyrillic names) correctly only with it
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(doc: Document) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    first = wb.active
    assert first is not None
    wb.remove(first)
    used: set[str] = set()
    bold = Font(bold=True)
    for t in doc.tables:
        name = "".join(ch for ch in t.title if ch not in "[]:*?/\\")[:28] or "Sheet"
        base, n = name, 2
        while name in used:
            name, n = f"{base[:25]} {n}", n + 1
        used.add(name)
        ws = wb.create_sheet(name)
        ws.append([doc.title])
        ws["A1"].font = bold
        for s in doc.subtitle:
            ws.append([s])
        ws.append([t.title])
        ws.append(t.columns)
        for cell in ws[ws.max_row]:
            cell.font = bold
        for row in t.rows:
            ws.append([Decimal(v) if i in t.money and v != "" else v for i, v in enumerate(row)])
            for i in t.money:
                ws.cell(ws.max_row, i + 1).number_format = "#,##0.00"
        if t.bold_last and t.rows:
            for cell in ws[ws.max_row]:
                cell.font = bold
        for i, col in enumerate(t.columns):
            width = max([len(str(col))] + [len(str(r[i])) for r in t.rows[:500]])
            ws.column_dimensions[ws.cell(1, i + 1).column_letter].width = min(width + 2, 50)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def to_pdf(doc: Document) -> bytes:
    from fpdf import FPDF, FontFace

    for path in (FONT, FONT_BOLD):
        if not Path(path).is_file():
            raise RuntimeError(
                f"PDF font {path} missing: install fonts-dejavu-core or set QADAM_REPORT_FONT"
            )
    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_font("DejaVu", "", FONT)
    pdf.add_font("DejaVu", "B", FONT_BOLD)
    pdf.set_title(doc.title)
    pdf.set_creator("qadam")
    pdf.alias_nb_pages()

    def footer() -> None:
        pdf.set_y(-10)
        pdf.set_font("DejaVu", "", 7)
        pdf.cell(0, 5, f"{doc.title} — page {pdf.page_no()}/{{nb}}", align="C")

    pdf.footer = footer  # type: ignore[method-assign]
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 14)
    pdf.multi_cell(0, 8, doc.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
    for s in doc.subtitle:
        pdf.multi_cell(0, 5, s, new_x="LMARGIN", new_y="NEXT")
    head = FontFace(emphasis="BOLD", fill_color=(225, 230, 240))
    for t in doc.tables:
        pdf.ln(4)
        pdf.set_font("DejaVu", "B", 11)
        pdf.multi_cell(0, 6, t.title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 8)
        if not t.rows:
            pdf.multi_cell(0, 5, "none", new_x="LMARGIN", new_y="NEXT")
            continue
        aligns = [
            "RIGHT" if i in t.money or all(isinstance(r[i], int) for r in t.rows[:50]) else "LEFT"
            for i in range(len(t.columns))
        ]
        with pdf.table(
            col_widths=tuple(t.widths) if t.widths else None,
            text_align=tuple(aligns),
            headings_style=head,
            line_height=4.5,
            padding=1,
            repeat_headings=1,
        ) as table:
            table.row(t.columns)
            for i, r in enumerate(t.rows):
                style = FontFace(emphasis="BOLD") if t.bold_last and i == len(t.rows) - 1 else None
                table.row([str(v) for v in r], style=style)
    return bytes(pdf.output())


def render(doc: Document, fmt: Format) -> bytes:
    if fmt == "csv":
        return to_csv(doc)
    if fmt == "xlsx":
        return to_xlsx(doc)
    return to_pdf(doc)
