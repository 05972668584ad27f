"""A byte budget per unit of an XML stream (a record, a row, a shared string), enforced while parsing.

libxml2 builds a whole start tag, text node or element before lxml reports it, and its own limits (10 MB
per text node or attribute value with huge_tree off) still let one start tag carry hundreds of such
attributes. Checks on what the parser hands out therefore come after the memory is spent. This wrapper
sits under the parser instead: lxml's iterparse pulls the source in 32 KiB reads, and the reader calls
`mark()` at every unit boundary it sees, so a read that takes the bytes since the last mark past the budget
fails before libxml2 gets them. Memory for one unit is thereby bounded by the budget, whatever the markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from shared.errors import FormatError


class BudgetedSource:
    """A file-like source for lxml that fails once more than `budget` bytes pass between two marks.

    `describe(budget)` words the failure (FormatError) for the unit the caller is reading. Raised from
    `read`, the error comes out of lxml's iterparse unchanged.
    """

    def __init__(self, raw: BinaryIO, *, budget: int, describe: Callable[[int], str]) -> None:
        self._raw = raw
        self._budget = budget
        self._describe = describe
        self.bytes_read = 0
        self._marked = 0

    def mark(self) -> None:
        """A unit ended (or began): its bytes no longer count against the next one."""
        self._marked = self.bytes_read

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.bytes_read += len(data)
        if self.bytes_read - self._marked > self._budget:
            raise FormatError(self._describe(self._budget))
        return data

    def close(self) -> None:
        self._raw.close()
