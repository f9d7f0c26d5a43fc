"""Tables for the book: shown as HTML tables in a notebook (they fit the text column and wrap, where
printed text is cut off at its right edge), and as aligned text in a terminal.

    vt.table.Table([{"dataset": "pocket-pairs", "zero-shot": 75.4}], caption="Top-1 (%)")

Numbers are formatted with ``fmt`` (one decimal by default); ``None`` shows as an empty cell.
Numeric columns are right-aligned. No pandas needed.

Taught in: used throughout the book (chapters 00, 04, 05, 06, 07).
"""
from __future__ import annotations

import html
import numbers
from typing import Mapping, Sequence


class Table:
    """Rows (mappings or sequences) under named columns; ``_repr_html_`` for notebooks."""

    def __init__(self, rows: Sequence[Mapping | Sequence], columns: Sequence[str] | None = None,
                 caption: str = "", fmt: str = "{:.1f}", formats: Mapping[str, str] | None = None):
        rows = list(rows)
        if columns is None:
            if not rows or not isinstance(rows[0], Mapping):
                raise ValueError("Table: give `columns` when the rows are not mappings (dicts)")
            columns = list(rows[0])
        self.columns = [str(c) for c in columns]
        self.rows = []
        for i, row in enumerate(rows):
            if isinstance(row, Mapping):
                unknown = set(map(str, row)) - set(self.columns)
                if unknown:
                    raise ValueError(f"Table: row {i} has keys {sorted(unknown)} not in the columns "
                                     f"{self.columns}")
                cells = [row.get(c) for c in self.columns]
            else:
                cells = list(row)
                if len(cells) != len(self.columns):
                    raise ValueError(f"Table: row {i} has {len(cells)} cells for "
                                     f"{len(self.columns)} columns {self.columns}")
            self.rows.append(cells)
        self.caption, self.fmt, self.formats = caption, fmt, dict(formats or {})

    def _cell(self, column: str, value) -> str:
        if value is None:
            return ""
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
            return self.formats.get(column, self.fmt).format(value)
        if isinstance(value, numbers.Integral) and column in self.formats:
            return self.formats[column].format(value)
        return str(value)

    def _numeric(self, j: int) -> bool:
        values = [r[j] for r in self.rows if r[j] is not None]
        return bool(values) and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                    for v in values)

    def text(self) -> list[list[str]]:
        """The cells as the strings shown, header row first."""
        return [self.columns] + [[self._cell(c, v) for c, v in zip(self.columns, r)] for r in self.rows]

    def _repr_html_(self) -> str:
        body = self.text()
        right = [self._numeric(j) for j in range(len(self.columns))]
        style = ['style="text-align: right"' if r else 'style="text-align: left"' for r in right]
        out = ['<table class="vtclip-table">']
        if self.caption:
            out.append(f"<caption>{html.escape(self.caption)}</caption>")
        out.append("<thead><tr>" + "".join(f"<th {s}>{html.escape(c)}</th>"
                                           for s, c in zip(style, body[0])) + "</tr></thead>")
        out.append("<tbody>")
        for row in body[1:]:
            out.append("<tr>" + "".join(f"<td {s}>{html.escape(c)}</td>" for s, c in zip(style, row))
                       + "</tr>")
        out.append("</tbody></table>")
        return "\n".join(out)

    def __repr__(self) -> str:
        body = self.text()
        widths = [max(len(r[j]) for r in body) for j in range(len(self.columns))]
        right = [self._numeric(j) for j in range(len(self.columns))]
        lines = [self.caption] if self.caption else []
        for row in body:
            lines.append("  ".join(c.rjust(w) if r else c.ljust(w)
                                   for c, w, r in zip(row, widths, right)).rstrip())
        return "\n".join(lines)
