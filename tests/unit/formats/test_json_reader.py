"""The JSON reader: arrays and JSON Lines, streamed over a sliding buffer."""

from __future__ import annotations

import codecs
import io
import json

import pytest

from shared.domain.schema import BUILTIN_FORMATS
from shared.errors import FormatError
from shared.formats.encoding import CHUNK_SIZE
from shared.formats.json_reader import _DepthGuard, read_json_rows
from shared.formats.readers import ERROR_KEY, ReaderLimits, read_rows
from tests.unit.formats import streams

JSON = BUILTIN_FORMATS["JSON"]


def rows(data: bytes, **limits: int) -> list:
    return list(read_json_rows(io.BytesIO(data), JSON, limits=ReaderLimits(**limits)))


def test_array_of_objects_with_value_text_rules() -> None:
    data = b'[{"ID": "A1", "QTY": 5, "PRICE": 1.10, "BIG": 123456789012345678901234567890,\n "OK": true, "NO": false, "NOTE": null}]'
    assert rows(data) == [
        (
            1,
            {
                "ID": "A1",
                "QTY": "5",
                "PRICE": "1.10",
                "BIG": "123456789012345678901234567890",
                "OK": "true",
                "NO": "false",
                "NOTE": None,
            },
        )
    ]


def test_array_records_are_numbered_by_position() -> None:
    data = b'[\n  {"A": 1},\n  {"A": 2},\n  {"A": 3}\n]\n'
    assert [number for number, _ in rows(data)] == [1, 2, 3]


def test_empty_inputs() -> None:
    assert rows(b"") == []
    assert rows(b"  \n ") == []
    assert rows(b"[]") == []
    assert rows(b" [ ] ") == []


def test_json_lines_are_numbered_by_line() -> None:
    data = b'{"A": 1}\n\n{"A": "two"}\r\n{"A": null}'
    assert rows(data) == [(1, {"A": "1"}), (3, {"A": "two"}), (4, {"A": None})]


def test_pretty_printed_object_sequence() -> None:
    data = b'{\n  "A": 1\n}\n{\n  "A": 2\n}\n'
    assert rows(data) == [(1, {"A": "1"}), (4, {"A": "2"})]


def test_nested_values_and_non_objects_are_row_errors() -> None:
    data = b'[{"A": {"x": 1}, "B": [1], "C": "ok"}, 7, [1], null, {"A": "fine"}]'
    result = rows(data)
    assert result[0][1][ERROR_KEY] == (
        "field A holds an object; only simple values are supported; "
        "field B holds an array; only simple values are supported"
    )
    assert result[0][1]["C"] == "ok"
    assert result[1] == (2, {ERROR_KEY: "record 2 is a JSON scalar value, not an object"})
    assert result[2] == (3, {ERROR_KEY: "record 3 is a JSON array, not an object"})
    assert result[3] == (4, {ERROR_KEY: "record 4 is a JSON null, not an object"})
    assert result[4] == (5, {"A": "fine"})


def test_utf8_bom_and_utf16_are_accepted() -> None:
    text = '[{"N": "Zoë"}]'
    expected = [(1, {"N": "Zoë"})]
    assert rows(codecs.BOM_UTF8 + text.encode()) == expected
    assert rows(codecs.BOM_UTF16_LE + text.encode("utf-16-le")) == expected
    assert rows(text.encode("utf-16-le")) == expected  # RFC 4627 detection without a BOM


def test_syntax_error_reports_line_and_column() -> None:
    with pytest.raises(FormatError) as info:
        rows(b'[{"A": 1},\n {"A": 2,}]')
    assert str(info.value) == (
        "the JSON is malformed at line 2, column 10 (character 21): "
        "a ',' before '}' (JSON allows no trailing comma) [Expecting property name enclosed in double quotes]"
    )


def test_json_lines_syntax_error_reports_its_line() -> None:
    with pytest.raises(FormatError, match=r"malformed at line 3, column 7"):
        rows(b'{"A": 1}\n{"A": 2}\n{"A": x}\n')


def test_truncated_and_unclosed_arrays() -> None:
    with pytest.raises(FormatError) as info:
        rows(b'[{"A": 1}, {"A": 2}')
    assert str(info.value) == (
        "the JSON ends after record 2 before the array opened at line 1, column 1 (character 1) is closed "
        "with ']'; the file looks truncated"
    )
    with pytest.raises(FormatError) as info:
        rows(b'[{"A": 1},\n {"A": ')
    assert str(info.value) == (
        "the JSON ends before record 2, which starts at line 2, column 2 (character 13), is complete; "
        "the file looks truncated"
    )
    with pytest.raises(FormatError, match="expected ',' or ']' after record 1"):
        rows(b'[{"A": 1} {"A": 2}]')


def test_data_after_the_array_is_an_error() -> None:
    with pytest.raises(FormatError, match="unexpected data after its top-level array"):
        rows(b'[{"A": 1}] {"A": 2}')


def test_top_level_scalar_is_an_error() -> None:
    with pytest.raises(FormatError, match="neither an array nor JSON Lines"):
        rows(b'"just a string"')
    with pytest.raises(FormatError) as info:
        rows(b"CODE,NAME\nA,x\n")
    assert str(info.value) == (
        "the JSON is neither an array nor JSON Lines: expected an object at line 1, column 1 (character 1), "
        "where the text starts with 'CODE,NAME'"
    )


def test_records_crossing_chunk_boundaries() -> None:
    # Long records and numbers that straddle the decoder's chunk boundaries must come out whole.
    records = [{"I": i, "TEXT": "x" * ((i * 997) % 5000), "N": 10**15 + i} for i in range(300)]
    data = json.dumps(records).encode()
    assert len(data) > 3 * CHUNK_SIZE
    result = rows(data)
    assert [values for _, values in result] == [
        {"I": str(r["I"]), "TEXT": r["TEXT"], "N": str(r["N"])} for r in records
    ]


def test_number_split_exactly_at_a_chunk_boundary() -> None:
    # A top-level number that ends where a chunk ends looks complete; the reader must not cut
    # it there (the rest, "456789", would then be a syntax error).
    head = b'[{"PAD": "' + b"p" * (CHUNK_SIZE - 30) + b'"}, '
    head += b" " * (CHUNK_SIZE - 3 - len(head))
    data = head + b"123456789]"
    assert data.index(b"123456789") == CHUNK_SIZE - 3
    result = rows(data)
    assert result[1] == (2, {ERROR_KEY: "record 2 is a JSON scalar value, not an object"})


def test_json_lines_crossing_chunk_boundaries_keep_line_numbers() -> None:
    lines = [json.dumps({"I": i, "PAD": "y" * 100}) for i in range(2000)]
    data = "\n".join(lines).encode()
    result = rows(data)
    assert [number for number, _ in result] == list(range(1, 2001))
    assert result[-1][1]["I"] == "1999"


def test_record_larger_than_the_limit() -> None:
    data = b'[{"A": "' + b"z" * 200_000 + b'"}]'
    with pytest.raises(FormatError, match="record 1 .* is longer than 100,000 characters"):
        rows(data, max_record_chars=100_000)


def test_too_many_fields() -> None:
    obj = {f"F{i}": i for i in range(20)}
    with pytest.raises(FormatError, match="record 1 has 20 fields; the limit is 10"):
        rows(json.dumps([obj]).encode(), max_columns=10)


def test_deep_nesting_fails_at_the_depth_limit_before_the_decoder_recurses() -> None:
    stream = streams.repeated(b'[{"A": ', b"[", 200 * 1024 * 1024)  # 200 MB of "[" that never close
    with pytest.raises(FormatError) as info:
        list(read_json_rows(stream))
    assert str(info.value) == (
        "the JSON nests arrays/objects more than 64 levels deep at line 1, column 70 (character 70); "
        "the limit is 64 (max_json_depth)"
    )
    assert stream.bytes_read < 2 * 1024 * 1024  # found in the first chunks, not after the record


def test_the_depth_limit_counts_from_the_top_level() -> None:
    def record(arrays: int) -> bytes:
        return b'{"A": ' + b"[" * arrays + b"]" * arrays + b"}"

    # The top-level array is level 1, the record 2, then 62 arrays: 64 levels.
    ((_, row),) = rows(b"[" + record(62) + b"]")
    assert row[ERROR_KEY] == "field A holds an array; only simple values are supported"
    with pytest.raises(FormatError, match="more than 64 levels deep"):
        rows(b"[" + record(63) + b"]")
    # JSON Lines: the record is level 1.
    assert len(rows(record(63) + b"\n")) == 1
    with pytest.raises(FormatError, match="more than 3 levels deep at line 2"):
        rows(b'{"A": 1}\n' + record(3) + b"\n", max_json_depth=3)


def test_brackets_inside_strings_do_not_count() -> None:
    tricky = '[[[[{{{ \\" ]]] \\\\'  # brackets, an escaped quote, an escaped backslash
    data = json.dumps([{"A": tricky * 50, "B": "x"}] * 3).encode()
    assert [r["A"] for _, r in rows(data, max_json_depth=2)] == [tricky * 50] * 3


def test_the_depth_guard_is_the_same_however_the_text_is_cut() -> None:
    text = '[{"A": "a[\\"{", "B": [[1, {"C": "]]\\\\"}]]}, {"D": "\\u005b"}, [[[[]]]]]'
    whole = _DepthGuard(100)
    assert whole.feed(text) is None
    deepest = 0
    for limit in range(1, 8):
        guard = _DepthGuard(limit)
        if guard.feed(text) is None:
            deepest = limit
            break
    assert deepest == 5  # [ [ [ [ [ ]]]]] at the end
    for cut in range(len(text) + 1):
        for limit in (deepest - 1, deepest):
            guard = _DepthGuard(limit)
            first = guard.feed(text[:cut])
            second = None if first is not None else guard.feed(text[cut:])
            failed_at = first if first is not None else (None if second is None else cut + second)
            assert failed_at == _DepthGuard(limit).feed(text), (cut, limit)


def test_without_the_depth_limit_the_decoder_still_fails_cleanly() -> None:
    data = b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]"
    with pytest.raises(FormatError, match="nests arrays/objects too deeply"):
        rows(data, max_record_chars=10**6, max_json_depth=10**6)


def test_a_string_over_the_field_limit_fails_the_file() -> None:
    data = b'[{"A": "ok"}, {"A": "' + b"x" * 3000 + b'"}]'
    with pytest.raises(FormatError) as info:
        rows(data, max_field_chars=2000)
    assert str(info.value) == (
        "record 2: field A is 3,000 characters long; the limit is 2,000 (max_field_chars)"
    )
    with pytest.raises(FormatError, match="is 3,000 characters long"):
        rows(b'[{"' + b"k" * 3000 + b'": 1}]', max_field_chars=2000)


def test_undecodable_byte_offset() -> None:
    with pytest.raises(FormatError, match="byte offset 9 "):
        rows(b'[{"A": "x\xff"}]')


def test_dispatch_through_read_rows() -> None:
    assert list(read_rows(io.BytesIO(b'[{"A": 1}]'), JSON)) == [(1, {"A": "1"})]


# --- issue 12: the OData shape, annotations, nothing dropped; errors that name their cause ----------


def test_odata_value_shape_with_annotations() -> None:
    data = (
        b'{"@odata.context": "https://usmf.example/data/$metadata#CustomerGroups",\n'
        b' "@odata.count": 2,\n'
        b' "value": [\n'
        b'  {"@odata.etag": "W/\\"abc\\"", "CODE": "A", "NAME@odata.type": "#Edm.String", "NAME": "x"},\n'
        b'  {"CODE": "B", "NAME": null}\n'
        b" ],\n"
        b' "@odata.nextLink": "https://usmf.example/data/CustomerGroups?$skip=2"}\n'
    )
    assert rows(data) == [(1, {"CODE": "A", "NAME": "x"}), (2, {"CODE": "B", "NAME": None})]
    assert rows(b'{"value": []}') == []
    assert rows(b' {\n "value" : [ {"A": 1} ] } ') == [(1, {"A": "1"})]


def test_odata_value_shape_streams_across_chunks() -> None:
    records = [{"I": i, "PAD": "y" * 300} for i in range(1000)]
    data = json.dumps({"@odata.context": "c" * (CHUNK_SIZE + 10), "value": records}).encode()
    assert len(data) > 4 * CHUNK_SIZE
    result = rows(data)
    assert [number for number, _ in result] == list(range(1, 1001))
    assert result[-1][1] == {"I": "999", "PAD": "y" * 300}


def test_a_record_with_a_value_field_is_still_json_lines() -> None:
    # Only an array under "value" makes the OData shape: an entity may have a field called VALUE.
    data = b'{"value": "10", "CODE": "A"}\n{"value": "20", "CODE": "B"}\n'
    assert rows(data) == [(1, {"value": "10", "CODE": "A"}), (2, {"value": "20", "CODE": "B"})]
    # A record with an annotation first is JSON Lines too; the annotation is dropped.
    assert rows(b'{"@odata.etag": "x", "CODE": "A"}\n') == [(1, {"CODE": "A"})]


def test_odata_shape_refuses_other_top_level_keys_instead_of_dropping_them() -> None:
    with pytest.raises(FormatError) as info:
        rows(b'{"value": [{"A": 1}], "lines": [{"B": 2}]}')
    assert "has the key 'lines' at line 1, column 23" in str(info.value)
    assert "only OData annotations" in str(info.value)
    with pytest.raises(FormatError, match="must appear once and hold the array of records"):
        rows(b'{"value": [{"A": 1}], "value": [{"A": 2}]}')
    with pytest.raises(
        FormatError, match=r"ends before the object opened at line 1, column 1 .* is closed with '\}'"
    ):
        rows(b'{"value": [{"A": 1}]')
    with pytest.raises(FormatError, match="unexpected data after its top-level object"):
        rows(b'{"value": [{"A": 1}]} {"value": []}')


def test_a_repeated_key_rejects_the_record() -> None:
    [(_, row)] = rows(b'[{"A": 1, "B": 2, "A": 3}]')
    assert row[ERROR_KEY] == "field A appears more than once"


def test_an_unclosed_string_names_where_it_starts() -> None:
    with pytest.raises(FormatError) as info:
        rows(b'[{"A": 1},\n {"A": "abc},\n {"A": 3}]\n')
    assert str(info.value) == (
        "the JSON is malformed at line 2, column 14 (character 25): the string that starts at line 2, column 8 "
        "(character 19) is not closed on its line (its closing quote is missing; a line break inside a string "
        "must be written \\n)"
    )
    # On one long line the record limit is reached first: the message still points at the string.
    data = b'[{"A": 1}, {"A": "abc}, ' + b"{A: 3} " * 50 + b"]"
    with pytest.raises(FormatError) as info:
        rows(data, max_record_chars=200)
    assert "the string that starts at line 1, column 18 (character 18) runs past the limit" in str(info.value)
    # On one line the string usually ends at the next quote instead, and the error comes after it.
    with pytest.raises(FormatError) as info:
        rows(b'[{"A": "abc}, {"A": 3}]')
    assert str(info.value) == (
        "the JSON is malformed at line 1, column 17 (character 17): a string ends just before this point; "
        'if it was meant to go on, a quote inside it must be written \\", or an earlier string lacks its '
        "closing quote [Expecting ',' delimiter]"
    )


def test_trailing_comma_and_single_quotes_are_named() -> None:
    with pytest.raises(FormatError, match=r"a ',' before '\]' \(JSON allows no trailing comma\)"):
        rows(b'[{"A": 1},]')
    with pytest.raises(FormatError, match="a single quote; JSON strings and names take double quotes"):
        rows(b"[{'A': 1}]")
