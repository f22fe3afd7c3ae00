"""Tables the CLI prints: for people, fitted to the terminal; for programs, ``--json``.

:func:`format_table` lays rows out in columns no wider than the terminal (``shutil.get_terminal_size``, so
``$COLUMNS`` when set): numbers keep their full width and are right-aligned; text columns (descriptions,
package lists) are wrapped onto further lines, the widest first, until the table fits. :func:`print_table`
prints it, or with ``--json`` (:func:`add_json_flag`) the same rows as one JSON list of objects on stdout;
:func:`say` sends a command's other lines (summary, "wrote ...") to stderr then, so stdout parses as JSON.

Standard library only (a pandas frame is taken through ``to_dict("records")``).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["add_json_flag", "format_table", "print_table", "rows_of", "say", "terminal_width"]

GAP = 2
"""Spaces between columns."""
MIN_TEXT = 12
"""A text column is wrapped down to this width before any column is cut further."""


def terminal_width() -> int:
    """The terminal's columns (``$COLUMNS`` when set; 100 when stdout is no terminal)."""
    return max(20, shutil.get_terminal_size((100, 24)).columns)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the table as JSON (a list of objects) on stdout")


def rows_of(table: Any) -> list[dict[str, Any]]:
    """``table`` (a pandas frame, or a sequence of mappings) as a list of plain dicts."""
    if hasattr(table, "to_dict"):
        return [dict(r) for r in table.to_dict("records")]
    return [dict(r) for r in table]


def _plain(value: Any) -> Any:
    """A JSON-able value: numpy scalars to Python, NaN to None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _is_number(value: Any) -> bool:
    value = _plain(value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any, spec: str | None) -> str:
    if isinstance(value, float) and math.isnan(value) or hasattr(value, "dtype") and value.dtype.kind == "f" and math.isnan(value):
        return "n/a"  # undefined (a precision with no yes answer); JSON has null
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return " ".join(str(value).split())  # one line: newlines and runs of spaces in a description


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def _widths(natural: list[int], numeric: list[bool], width: int, words: list[tuple[int, int]] | None = None) -> list[int]:
    """Column widths whose sum (with the gaps) is at most ``width``: numbers and the first column (the row's
    name) keep theirs; the other text columns share what is left in proportion to their excess over their
    floor (their longest word, so that names are not cut; when the floors do not fit, the column with the
    most words (prose, not names) gives up its floor first, down to :data:`MIN_TEXT`). On a
    terminal too narrow even for that, the widest column is cut first, any column down to 1."""
    widths = list(natural)
    budget = width - GAP * (len(widths) - 1)
    if sum(widths) <= budget:
        return widths
    words = words or [(0, 0)] * len(natural)  # per column: (longest word, number of words)
    text = [i for i, w in enumerate(natural) if i > 0 and not numeric[i] and w > MIN_TEXT]  # the first: the row's name
    fixed = sum(w for i, w in enumerate(natural) if i not in text)
    floors = {i: min(natural[i], max(MIN_TEXT, words[i][0])) for i in text}
    while sum(floors.values()) > budget - fixed and any(f > MIN_TEXT for f in floors.values()):
        i = max((i for i in text if floors[i] > MIN_TEXT), key=lambda j: words[j][1])  # prose (most words) first
        floors[i] -= 1
    room = budget - fixed - sum(floors.values())
    if text and room >= 0:
        excess = sum(natural[i] - floors[i] for i in text) or 1
        for i in text:
            widths[i] = floors[i] + (natural[i] - floors[i]) * room // excess
        return widths
    for i in text:
        widths[i] = MIN_TEXT
    while sum(widths) > budget and max(widths) > 1:
        widths[widths.index(max(widths))] -= 1
    return widths


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    width: int | None = None,
    floatfmt: str | Mapping[str, str] = ".3f",
) -> str:
    """``rows`` as text columns no wider than ``width`` (default: :func:`terminal_width`); see the module
    docstring. ``floatfmt``: a format spec for every float, or ``{column: spec}``."""
    width = width or terminal_width()
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    if not columns:
        return ""
    fmts = {c: (floatfmt.get(c) if isinstance(floatfmt, Mapping) else floatfmt) for c in columns}
    cells = [[_cell(r.get(c), fmts[c]) for c in columns] for r in rows]
    numeric = [bool(rows) and all(_is_number(r.get(c)) or _plain(r.get(c)) is None for r in rows) for c in columns]
    natural = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    words = [(max([len(w) for row in cells for w in row[i].split()] or [0]), sum(len(row[i].split()) for row in cells))
             for i in range(len(columns))]
    widths = _widths(natural, numeric, width, words)
    lines = []
    for row in [list(columns), ["-" * w for w in widths], *cells]:
        wrapped = [_wrap(text, w) for text, w in zip(row, widths)]
        for k in range(max(len(w) for w in wrapped)):
            parts = []
            for i, w in enumerate(widths):
                piece = wrapped[i][k] if k < len(wrapped[i]) else ""
                parts.append(piece.rjust(w) if numeric[i] else piece.ljust(w))
            lines.append((" " * GAP).join(parts).rstrip())
    return "\n".join(lines)


def print_table(
    args: argparse.Namespace | None,
    table: Any,
    columns: Sequence[str] | None = None,
    *,
    floatfmt: str | Mapping[str, str] = ".3f",
) -> None:
    """Print ``table`` (a frame or rows): JSON with ``--json``, else :func:`format_table` (see the module docstring)."""
    rows = rows_of(table)
    if columns is not None:
        rows = [{c: r.get(c) for c in columns} for r in rows]
    if getattr(args, "json", False):
        json.dump([{k: _plain(v) for k, v in r.items()} for r in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(rows, columns, floatfmt=floatfmt))


def say(args: argparse.Namespace | None, text: str) -> None:
    """One line for the person reading: stdout, or stderr with ``--json`` (stdout is the JSON then)."""
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout)
