"""Every source-file class of the hostile corpus (tests/support/hostile.py) against the readers: each ends
with its bound named, or reads normally, and the worst ones stay within a memory bound in a fresh process.

The corpus is generated, never committed; the through-the-host versions are tests/e2e/test_hostile_files.py,
and bench/bench_hostile_memory.py measures the whole import of each case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.domain.schema import BUILTIN_FORMATS
from shared.errors import FormatError
from shared.formats.readers import read_rows
from tests.support import hostile
from tests.unit.formats import streams

REPO = Path(__file__).resolve().parents[3]
# Refused at 4,000,000 strings after reading them all (tens of seconds): the same bound is tested with a
# small limit in test_excel_reader.py, and the bench runs this one.
SLOW = {"xlsx-shared-strings-5M"}
# The reader alone, in a fresh process: interpreter, lxml and openpyxl's helpers included.
READER_PEAK_MB = 256


def read_all(case: hostile.Case) -> int:
    stream = streams.GeneratedStream(iter(case.chunks()))
    return sum(1 for _ in read_rows(stream, BUILTIN_FORMATS[case.fmt.upper()]))


@pytest.mark.parametrize("case", [c for c in hostile.CASES if c.name not in SLOW], ids=lambda c: c.name)
def test_each_hostile_input_ends_with_its_bound_named(case: hostile.Case) -> None:
    if case.status == hostile.PROCESSED:
        assert read_all(case) > 0
        return
    with pytest.raises(FormatError) as info:
        read_all(case)
    assert case.reason in str(info.value)


CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from shared.domain.schema import BUILTIN_FORMATS
from shared.errors import FormatError
from shared.formats.readers import read_rows
from tests.support import hostile
case = hostile.CASES_BY_NAME[sys.argv[2]]
with open(sys.argv[3], "rb") as f:
    try:
        rows = sum(1 for _ in read_rows(f, BUILTIN_FORMATS[case.fmt.upper()]))
        reason = None
    except FormatError as exc:
        rows, reason = None, str(exc)
# VmHWM, not getrusage's ru_maxrss: Linux carries a parent's peak into ru_maxrss across fork and exec, so a
# child of a big pytest worker would report the parent's size.
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"reason": reason, "peak_kb": peak}))
"""


@pytest.mark.parametrize(
    "name",
    ["xlsx-shared-strings-300MB", "xml-4MB-of-empty-attributes", "json-100k-deep", "json-50MB-string"],
)
def test_peak_memory_of_the_worst_inputs(name: str, tmp_path: Path) -> None:
    """The 300 MB of shared strings took 330 MB through openpyxl (2.3 GB in the attack run, whose strings
    were shaped differently); the 4 MB start tag of empty attributes is the most any XML record can take."""
    case = hostile.CASES_BY_NAME[name]
    path = tmp_path / "input"
    hostile.write(case.chunks(), path)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), name, str(path)], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    assert case.reason in result["reason"]
    assert result["peak_kb"] / 1024 < READER_PEAK_MB
