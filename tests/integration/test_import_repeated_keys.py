"""Repeated keys in one file, through the import pipeline and the real entity store (Azurite): the last row
in file order wins, the counts are those of writing every row in order, and the cost is bounded by the
rows, not by how often a key repeats (20,000 rows of one key used to take 20,000 sequential writes)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest

from shared.domain.config import parse_entity
from shared.domain.schema import BUILTIN_FORMATS
from shared.services.import_pipeline import EntityInput, ErrorFile, preprocess, process
from tests.support import hostile

WIDE = 6  # string fields F0..F5, for rows the store refuses


@pytest.fixture
def entity():
    fields = [{"name": "CODE", "type": "string"}, {"name": "NAME", "type": "string"}]
    fields += [{"name": f"F{i}", "type": "string"} for i in range(WIDE)]
    return parse_entity(f"Rk{uuid.uuid4().hex[:8]}", {"keys": ["CODE"], "fields": fields})


def run_import(services, entity, data: bytes):
    """Preprocess and process `data` (CSV) with the real repository; returns (outcome, error lines, calls)."""
    repo = services.entity_repo()
    now = datetime.now(UTC)
    errors = ErrorFile()
    inp = EntityInput(entity=entity, fmt=BUILTIN_FORMATS["CSV"], open_stream=lambda: io.BytesIO(data))
    outcome, spool = preprocess(inp, encode=lambda r: repo.encode(entity, r, "usmf", now), errors=errors)
    calls = Windows()

    def start_upsert(rows):
        calls.started(rows)
        wait = repo.start_upsert(entity, rows)

        def waited():
            calls.ended(rows)
            return wait()

        return waited

    process(spool, outcome, start_upsert=start_upsert, errors=errors)
    assert not calls.writing, "process() returned with windows still being written"
    errors._text.flush()
    errors._raw.seek(0)
    lines = list(csv.reader(io.TextIOWrapper(errors._raw, encoding="utf-8", newline="")))[1:]
    return outcome, lines, calls


class Windows(list):
    """The rows per window process() wrote (a list of counts), checking as they start and end that no key is
    in two windows written at once (the later row of a key could then be stored first)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing: list[set[tuple[str, str]]] = []
        self.most_at_once = 0

    def started(self, rows) -> None:
        keys = {(r["PartitionKey"], r["RowKey"]) for r in rows}
        for other in self.writing:
            assert not keys & other, f"a key is in two windows written at once: {sorted(keys & other)[:3]}"
        self.writing.append(keys)
        self.most_at_once = max(self.most_at_once, len(self.writing))
        self.append(len(rows))

    def ended(self, rows) -> None:
        self.writing.remove({(r["PartitionKey"], r["RowKey"]) for r in rows})


def stored(services, entity) -> dict[str, dict]:
    return {row["CODE"]: row for row in services.entity_repo().iter_rows(entity)}


def test_20000_rows_of_one_key_are_one_write_and_the_last_row_wins(services, entity):
    data = hostile.join(hostile.csv_repeated_key(20_000)).replace(b"CODE,NAME,AMOUNT", b"CODE,NAME,F0")
    data += b"OTHER1,o1,x\r\nSAME,final,y\r\nOTHER2,o2,z\r\n"
    outcome, errors, calls = run_import(services, entity, data)
    assert (outcome.read, outcome.written, outcome.rejected) == (20_003, 20_003, 0)
    assert errors == []
    # One window: before the fix each repetition flushed what was waiting, one round trip per row.
    assert len(calls) == 1 and calls[0] == 3
    rows = stored(services, entity)
    assert sorted(rows) == ["OTHER1", "OTHER2", "SAME"]
    assert (rows["SAME"]["NAME"], rows["SAME"]["F0"]) == ("final", "y")


def test_keys_repeated_across_windows_keep_file_order(services, entity):
    # 4,000 keys per round over 16 partitions: full batches are written between repetitions, and some
    # repetitions find their key still waiting in a part-filled batch.
    lines = ["CODE,NAME"]
    for round_ in range(3):
        lines += [f"K{i},r{round_}" for i in range(4000)]
    outcome, errors, windows = run_import(services, entity, ("\r\n".join(lines) + "\r\n").encode())
    assert (outcome.read, outcome.written, outcome.rejected) == (12_000, 12_000, 0)
    assert errors == []
    # Every repetition's key was in the window before it: windows never overlapped on a key (Windows.started).
    assert len(windows) >= 3, windows
    names = [row["NAME"] for row in stored(services, entity).values()]
    assert len(names) == 4000 and set(names) == {"r2"}


def test_windows_of_distinct_keys_are_written_two_at_a_time(services, entity):
    """The next window is sent while the last one is written, so the upsert pool never idles on a window's
    last batch or on reading the spool (issue 14: large imports at the batch-upsert ceiling)."""
    lines = ["CODE,NAME"] + [f"D{i},n{i}" for i in range(10_000)]
    outcome, errors, windows = run_import(services, entity, ("\r\n".join(lines) + "\r\n").encode())
    assert (outcome.read, outcome.written, outcome.rejected) == (10_000, 10_000, 0)
    assert errors == []
    assert windows.most_at_once == 2 and sum(windows) == 10_000, windows
    assert len(stored(services, entity)) == 10_000


def test_a_row_the_store_refuses_is_rejected_even_when_a_later_row_replaces_it(services, entity):
    too_long = "x" * 40_000  # over the store's 32K UTF-16 characters per value
    data = f"CODE,NAME\r\nA,{too_long}\r\nA,ok\r\nB,fine\r\n".encode()
    outcome, errors, _ = run_import(services, entity, data)
    assert (outcome.read, outcome.written, outcome.rejected) == (3, 2, 1)
    assert [(line, reason) for _, line, reason, _ in errors] == [
        (
            "2",
            "the entity store refuses values longer than 32,768 UTF-16 characters (64 KiB); NAME has 40,000",
        )
    ]
    rows = stored(services, entity)
    assert rows["A"]["NAME"] == "ok" and rows["B"]["NAME"] == "fine"


def test_when_the_store_refuses_the_last_row_the_rows_it_replaced_are_rejected_with_it(services, entity):
    """A row within the documented limits that Azurite still refuses: Azurite measures an entity by its
    UTF-8 JSON body (the SDK escapes "€" as 6 bytes), the service by its formula (2 bytes), so six values
    of 30,000 "€" pass the formula and exceed Azurite's 1 MB (azurite dist/src/table/handlers/TableHandler.js
    checkEntityLimit). Nothing is silent: the replaced rows never reached the store, and say so."""
    euros = ",".join(["€" * 30_000] * WIDE)
    header = "CODE,NAME," + ",".join(f"F{i}" for i in range(WIDE))
    blanks = "," * WIDE
    data = f"{header}\r\nA,first{blanks}\r\nA,second{blanks}\r\nA,big,{euros}\r\nB,fine{blanks}\r\n".encode()
    outcome, errors, _ = run_import(services, entity, data)
    assert (outcome.read, outcome.written, outcome.rejected) == (4, 1, 3)
    reasons = {line: reason for _, line, reason, _ in errors}
    assert sorted(reasons) == ["2", "3", "4"]
    assert "larger than the maximum allowed size (1MB)" in reasons["4"]
    assert (
        reasons["2"]
        == reasons["3"]
        == (
            "not written: line 4 has the same key and replaced this row before it was written, "
            "and the entity store refused line 4"
        )
    )
    assert sorted(stored(services, entity)) == ["B"]
