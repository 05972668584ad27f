"""The bounded JSON body parser (shared.api.json_body): every limit is a 4xx naming it, never a 500 or a hang.

The classes come from issue 17's attack run: deep nesting (json.loads raises RecursionError), a 5,000-digit
integer (int() raises ValueError past sys.int_max_str_digits), a lone surrogate (fails later in storage),
invalid UTF-8, oversize bodies, and PSI's single-quoted bodies (PROTOCOL §4) carrying the same.
"""

from __future__ import annotations

import json
import sys

import pytest

from shared.api.json_body import JsonLimits, parse_bytes, parse_text
from shared.errors import AppError

LIMITS = JsonLimits(max_bytes=1024 * 1024)


def code_of(raw: bytes, limits: JsonLimits = LIMITS, *, lenient: bool = False) -> tuple[int, str]:
    with pytest.raises(AppError) as caught:
        parse_bytes(raw, limits, lenient_quotes=lenient)
    return caught.value.status, caught.value.code


# Valid input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, -2.5, 3e10, true, false, null], "b": {"c": "x[y{z\\"}"}}',
        '"just a string"',
        "[]",
        '{"emoji": "\\ud83d\\ude00", "é": "ü"}',
        '{"n": ' + "9" * 40 + "}",
        "[" * 64 + "]" * 64,
    ],
)
def test_json_parses_as_json_loads_does(text):
    assert parse_bytes(text.encode()) == json.loads(text)


def test_a_utf8_bom_is_dropped():
    assert parse_bytes(b'\xef\xbb\xbf{"a":1}') == {"a": 1}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (
            "{'messageId':'3f2504e0-4f89-11d3-9a0c-0305e82c3301'}",
            {"messageId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"},
        ),
        ("{'a': 'it\\'s \"quoted\"', \"b\": 'x'}", {"a": 'it\'s "quoted"', "b": "x"}),
        ("{'a': '\\u00e9\\n', 'b': [1, 'two']}", {"a": "é\n", "b": [1, "two"]}),
        ("{'a': \"it's\"}", {"a": "it's"}),
    ],
)
def test_single_quoted_strings_are_json_strings_when_lenient(text, value):
    assert parse_text(text, lenient_quotes=True) == value


def test_powershell_booleans_are_json_booleans_when_lenient():
    # `"{'execute':$true}"` in PowerShell is {'execute':True}.
    text = "{'execute':True,'overwrite':False,'s':'True','n':null,\"t\":true}"
    assert parse_text(text, lenient_quotes=True) == {
        "execute": True,
        "overwrite": False,
        "s": "True",
        "n": None,
        "t": True,
    }
    with pytest.raises(AppError) as caught:
        parse_text('{"a": True}')
    assert caught.value.code == "InvalidJson"


@pytest.mark.parametrize("text", ["{'a': 1}", "['x']"])
def test_single_quotes_are_refused_when_strict(text):
    with pytest.raises(AppError) as caught:
        parse_text(text)
    assert caught.value.code == "InvalidJson" and "single-quoted" in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        "{'a': None}",  # Python literals are not JSON
        "{'a': TRUE}",
        "{'a': Truex}",
        "('a', 'b')",
        "{'a': 1,}",
        "{'a': b'x'}",
        "__import__('os').system('true')",
        "{'a': 1e5j}",
    ],
)
def test_only_json_grammar_is_accepted_even_when_lenient(text):
    with pytest.raises(AppError) as caught:
        parse_text(text, lenient_quotes=True)
    assert caught.value.code == "InvalidJson"


# The hostile classes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"[" * 100_000 + b"]" * 100_000, (400, "JsonTooDeep")),
        (b'{"a":' + b"[" * 100_000, (400, "JsonTooDeep")),
        (b"[" * 65 + b"]" * 65, (400, "JsonTooDeep")),
        (b'{"a":' + b"9" * 5000 + b"}", (400, "JsonNumberTooLong")),
        (b'{"a":-' + b"1" * 41 + b"}", (400, "JsonNumberTooLong")),
        (b'{"a":0.' + b"1" * 45 + b"}", (400, "JsonNumberTooLong")),
        (b'{"a":1e999}', (400, "JsonNumberTooLong")),
        (b'{"a":"\\ud800"}', (400, "InvalidUnicode")),
        (b'{"\\udfff":1}', (400, "InvalidUnicode")),
        (b'["ok", {"deep": ["\\ud83d"]}]', (400, "InvalidUnicode")),
        (b'{"a":"\xff\xfe"}', (400, "InvalidUnicode")),
        (b'{"a":"\xed\xa0\x80"}', (400, "InvalidUnicode")),  # a surrogate encoded as UTF-8 is invalid UTF-8
        (b" " * (1024 * 1024 + 1), (413, "PayloadTooLarge")),
        (b'{"a":NaN}', (400, "InvalidJson")),
        (b'{"a":-Infinity}', (400, "InvalidJson")),
        (b"not json", (400, "InvalidJson")),
        (b'{"a":"unterminated', (400, "InvalidJson")),
        (b'{"a":"\x01"}', (400, "InvalidJson")),
    ],
)
def test_hostile_bodies_are_refused_with_a_named_code(raw, expected, lenient):
    assert code_of(raw, lenient=lenient) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{'a':" + "[" * 100_000, "JsonTooDeep"),
        ("{'a':" + "9" * 5000 + "}", "JsonNumberTooLong"),
        ("{'a':'\\ud800'}", "InvalidUnicode"),
        ("{'a':'\\udc00x'}", "InvalidUnicode"),
        ("{'a':'" + "\\'" * 30_000, "InvalidJson"),  # unterminated: refused at once, not re-scanned
    ],
)
def test_single_quoted_bodies_meet_the_same_limits(text, code):
    with pytest.raises(AppError) as caught:
        parse_text(text, LIMITS, lenient_quotes=True)
    assert caught.value.code == code


def test_brackets_and_digits_inside_strings_do_not_count():
    text = json.dumps({"a": "[" * 1000 + "9" * 1000, "b": "{" * 1000})
    assert parse_text(text)["b"] == "{" * 1000
    single = "{'a': '" + "[" * 1000 + "\"'}"
    assert parse_text(single, lenient_quotes=True) == {"a": "[" * 1000 + '"'}


def test_the_depth_limit_is_configurable_and_exact():
    limits = JsonLimits(max_depth=3)
    assert parse_text("[[[1]]]", limits) == [[[1]]]
    with pytest.raises(AppError, match="nested more than 3 levels"):
        parse_text("[[[[1]]]]", limits)


def test_the_byte_cap_counts_bytes_before_decoding():
    limits = JsonLimits(max_bytes=10)
    assert parse_bytes(b'{"a":"b"}', limits) == {"a": "b"}
    with pytest.raises(AppError) as caught:
        parse_bytes('{"a":"éé"}'.encode(), limits)  # 10 characters, 12 bytes
    assert (caught.value.status, caught.value.code) == (413, "PayloadTooLarge")
    assert "at most 10 bytes" in caught.value.message


def test_string_length_limit():
    limits = JsonLimits(max_string_chars=5)
    assert parse_text('{"abc": "12345"}', limits) == {"abc": "12345"}
    for text, lenient in (('{"a": "123456"}', False), ("{'a': '123456'}", True)):
        with pytest.raises(AppError) as caught:
            parse_text(text, limits, lenient_quotes=lenient)
        assert caught.value.code == "JsonStringTooLong"


def test_a_raw_lone_surrogate_in_text_is_refused():
    with pytest.raises(AppError) as caught:
        parse_text('{"a": "\ud800"}')
    assert caught.value.code == "InvalidUnicode"


def test_limits_hold_below_the_interpreter_limits():
    # The parser refuses long before json.loads or int() would fail on their own.
    assert sys.getrecursionlimit() > JsonLimits().max_depth
    with pytest.raises(AppError) as caught:
        parse_text("[" * (sys.getrecursionlimit() * 2) + "]" * (sys.getrecursionlimit() * 2), LIMITS)
    assert caught.value.code == "JsonTooDeep"


def test_a_large_valid_configuration_document_parses():
    doc = {
        "fields": [
            {"name": f"F{i}", "type": "string", "maxLength": 10, "label": "x" * 50} for i in range(5000)
        ]
    }
    raw = json.dumps(doc).encode()
    assert len(raw) < LIMITS.max_bytes
    assert parse_bytes(raw, LIMITS) == doc
