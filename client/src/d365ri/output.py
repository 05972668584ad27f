"""Results for people (aligned tables, key/value blocks) or for scripts (--json: one JSON document on stdout).

Progress bars, notes and warnings go to stderr, so stdout stays clean for pipes in both modes.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class Output:
    def __init__(self, *, as_json: bool, quiet: bool = False, out=None, err=None) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def note(self, text: str) -> None:
        """A line for the person watching (stderr); silent with --quiet."""
        if not self.quiet:
            print(text, file=self.err, flush=True)

    def result(self, data: Any, *, table: list[dict] | None = None, columns: list[str] | None = None) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2, default=str), file=self.out, flush=True)
            return
        if table is not None:
            print(render_table(table, columns), file=self.out, flush=True)
        elif isinstance(data, dict):
            print(render_pairs(data), file=self.out, flush=True)
        else:
            print(data, file=self.out, flush=True)

    def event(self, event: dict) -> None:
        """Watch events: JSON lines with --json, otherwise one readable line each."""
        if self.as_json:
            print(json.dumps(event, default=str), file=self.out, flush=True)
            return
        fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "at") and v is not None)
        print(f"{event.get('at', '')} {event['event']:<10} {fields}", file=self.out, flush=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def render_table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "(none)"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def render_pairs(data: dict) -> str:
    lines = []
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{key}:")
            lines += ["  " + line for line in render_table(value).splitlines()]
        elif isinstance(value, list):
            lines.append(f"{key}:" + ("" if value else " (none)"))
            lines += [f"  - {_cell(v)}" for v in value]
        else:
            lines.append(f"{key.ljust(width)}  {_cell(value)}")
    return "\n".join(lines)
