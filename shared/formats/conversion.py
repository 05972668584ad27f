"""Turns raw source text into an entity field's typed value, or a reason people can act on.

A bad value rejects its record, never the file, so every failure is a ConversionError whose
message names the field and says what was wrong ("PAYMENTTERMS: 'Net90' is not one of Net30,
Net60"). Converters are built once per field and format (`make_converter`) because the mapper
calls them for every value of every row.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from shared.domain.schema import Field, SourceFormat

Converter = Callable[[str], object]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_PREVIEW = 60
_ENUM_LISTED = 20

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?\Z")
# The ISO 8601 shapes fromisoformat should see: date, date + time (T or space), fraction, zone.
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?\Z"
)
_ISO_PATTERNS = frozenset(
    {"%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "yyyy-MM-dd", "yyyy-MM-dd HH:mm:ss"}
)

# .NET custom date format tokens (as D365 and partners write them) -> strptime directives.
_DOTNET_TOKEN = re.compile(r"yyyy|yy|MMMM|MMM|MM|M|dd|d|HH|H|hh|h|mm|m|ss|s|f{1,7}|tt|zzz|'[^']*'|%")
_DOTNET = {
    "yyyy": "%Y",
    "yy": "%y",
    "MMMM": "%B",
    "MMM": "%b",
    "MM": "%m",
    "M": "%m",
    "dd": "%d",
    "d": "%d",
    "HH": "%H",
    "H": "%H",
    "hh": "%I",
    "h": "%I",
    "mm": "%M",
    "m": "%M",
    "ss": "%S",
    "s": "%S",
    "tt": "%p",
    "zzz": "%z",
    "%": "%%",
}


class ConversionError(ValueError):
    """A value that does not fit its field. `reason` is the message for the error file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def preview(value: str) -> str:
    """A value quoted for a message, shortened so one huge value cannot flood the error file."""
    if len(value) > _PREVIEW:
        value = value[: _PREVIEW - 1] + "…"
    return repr(value)


def strptime_pattern(pattern: str) -> str:
    """A strptime pattern from either a strptime pattern or a .NET one ("yyyy-MM-dd HH:mm:ss")."""
    if "%" in pattern:
        return pattern

    def token(match: re.Match[str]) -> str:
        text = match.group()
        if text.startswith("'"):
            return text[1:-1].replace("%", "%%")
        if text.startswith("f"):
            return "%f"
        return _DOTNET[text]

    return _DOTNET_TOKEN.sub(token, pattern)


def _parse_iso(text: str) -> dt.datetime | None:
    if not _ISO.match(text):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None


def _parse_custom(text: str, pattern: str | None) -> dt.datetime | None:
    if pattern is None:
        return None
    try:
        return dt.datetime.strptime(text, pattern)
    except ValueError:
        return None


def is_iso_pattern(pattern: str | None) -> bool:
    """Whether a format's date pattern is ISO 8601 (then any ISO 8601 shape is accepted)."""
    return not pattern or pattern in _ISO_PATTERNS


def _custom(pattern: str) -> str | None:
    """The strptime pattern to try before ISO, or None when the format is ISO anyway."""
    if is_iso_pattern(pattern):
        return None
    return strptime_pattern(pattern)


def check_date_pattern(pattern: str, *, with_time: bool) -> str | None:
    """Why `pattern` cannot read dates (None when it can): it must write a date and read it back.

    A pattern without the year, the month or the day (or with a letter that is no .NET token, such
    as "DD.MM.YYYY", which strptime would take as literal text) fails this round trip, so the
    mistake is a 400 on save instead of every row rejected later. `with_time`: a datetime pattern,
    whose time of day may be coarser than the sample's (minutes only), so only the date must survive.
    """
    sample = dt.datetime(2031, 12, 25, 13, 45, 56)
    strp = strptime_pattern(pattern)
    try:
        text = sample.strftime(strp)
        back = dt.datetime.strptime(text, strp)
    except (ValueError, TypeError):
        return "it is not a date pattern that can read what it writes"
    if back.date() != sample.date():
        return "it must contain the year (yyyy or yy), the month (MM, M, MMM or MMMM) and the day (dd or d)"
    if not with_time and back.time() != dt.time(0, 0):  # pragma: no cover - dates format no time
        return "a date pattern takes no time of day"
    return None


def _string(field: Field) -> Converter:
    name, limit = field.name, field.max_length

    if not limit:
        return str

    def convert(raw: str) -> object:
        if len(raw) > limit:
            raise ConversionError(
                f"{name}: {preview(raw)} is {len(raw)} characters long; the limit is {limit}"
            )
        return raw

    return convert


def _grouping(fmt: SourceFormat) -> re.Pattern[str] | None:
    """What a number with thousands separators must look like (1-3 digits, then groups of three)."""
    thousands = fmt.thousands_separator
    if not thousands:
        return None
    decimal = re.escape(fmt.decimal_separator or ".")
    return re.compile(rf"[+-]?\d{{1,3}}(?:{re.escape(thousands)}\d{{3}})+(?:{decimal}\d*)?\Z")


def _number_text(text: str, fmt: SourceFormat, grouping: re.Pattern[str] | None) -> str | None:
    """`text` in Python's notation ("1234.56"), or None when it breaks the format's separators.

    With a thousands separator set, the separator is removed only from a number whose groups are
    regular ("1.234.567,8"), so "1.2345" is refused rather than read as 12345.
    """
    thousands = fmt.thousands_separator
    if grouping is not None and thousands in text:
        if not grouping.match(text):
            return None
        text = text.replace(thousands, "")
    separator = fmt.decimal_separator or "."
    if separator != ".":
        # With a decimal comma, a "." can only be a thousands separator, and that is not one here.
        if "." in text:
            return None
        text = text.replace(separator, ".", 1)
    return text


def _number_hint(fmt: SourceFormat) -> str:
    separator = fmt.decimal_separator or "."
    if fmt.thousands_separator:
        return (
            f"use {separator!r} as the decimal separator and {fmt.thousands_separator!r} between groups "
            "of three digits"
        )
    return f"use {separator!r} as the decimal separator and no thousands separators"


def _int(field: Field, fmt: SourceFormat) -> Converter:
    name = field.name
    grouping = _grouping(fmt)

    def convert(raw: str) -> object:
        text = raw.strip()
        if not text:
            return None
        # Only a format with a thousands separator changes how whole numbers read ("1.234" -> 1234);
        # others keep reading "5.0" as 5, as before the setting existed.
        number = _number_text(text, fmt, grouping) if grouping is not None else text
        if number is not None and _DECIMAL.match(number) and len(number) <= 40:
            value = Decimal(number)
            # "5.0" or "5E+1" (JSON, spreadsheets) are whole numbers too; "5.5" is not.
            if value == value.to_integral_value():
                whole = int(value)
                if _INT64_MIN <= whole <= _INT64_MAX:
                    return whole
                raise ConversionError(f"{name}: {preview(text)} is out of range for a whole number")
        if grouping is not None:
            raise ConversionError(f"{name}: {preview(text)} is not a whole number ({_number_hint(fmt)})")
        raise ConversionError(f"{name}: {preview(text)} is not a whole number")

    return convert


def _decimal(field: Field, fmt: SourceFormat) -> Converter:
    name = field.name
    grouping = _grouping(fmt)
    hint = _number_hint(fmt)

    def convert(raw: str) -> object:
        text = raw.strip()
        if not text:
            return None
        number = _number_text(text, fmt, grouping)
        if number is None or not _DECIMAL.match(number):
            raise ConversionError(f"{name}: {preview(text)} is not a decimal number ({hint})")
        try:
            return Decimal(number)
        except InvalidOperation:  # pragma: no cover - the pattern only lets valid numbers through
            raise ConversionError(f"{name}: {preview(text)} is not a decimal number") from None

    return convert


def _typed_source(fmt: SourceFormat) -> bool:
    """Whether the reader turns typed values into canonical text: Excel's date and boolean cells and
    JSON's true/false arrive as "2024-01-31" and "true", whatever the format's patterns and words say."""
    return fmt.kind in ("excel", "json")


def _bool(field: Field, fmt: SourceFormat) -> Converter:
    name = field.name
    # Yes/no words match ignoring case and surrounding blanks ("JA", " ja" are "Ja"); the format's own
    # words replace the English defaults, so a German format can refuse "yes".
    words = {w.strip().casefold(): True for w in fmt.yes_words}
    words.update({w.strip().casefold(): False for w in fmt.no_words})
    if _typed_source(fmt):
        words.setdefault("true", True)  # a boolean cell or JSON literal
        words.setdefault("false", False)
    if fmt.true_values or fmt.false_values:
        hint = f"use {' or '.join(fmt.yes_words)} for yes and {' or '.join(fmt.no_words)} for no"
    else:
        hint = "use true/false, yes/no or 1/0"

    def convert(raw: str) -> object:
        text = raw.strip()
        if not text:
            return None
        value = words.get(text.casefold())
        if value is None:
            raise ConversionError(f"{name}: {preview(text)} is not a yes/no value ({hint})")
        return value

    return convert


def _date(field: Field, fmt: SourceFormat) -> Converter:
    name = field.name
    date_pattern = _custom(fmt.date_format)
    datetime_pattern = _custom(fmt.datetime_format)
    # ISO 8601 is read when the format's date pattern is ISO, or when the format asks for it
    # (acceptIsoDates), or for Excel and JSON, whose date cells the reader writes as ISO; otherwise a
    # custom pattern means "only this pattern".
    iso = date_pattern is None or fmt.accept_iso_dates or _typed_source(fmt)
    expected = fmt.date_format if date_pattern else "yyyy-MM-dd"
    if date_pattern and fmt.accept_iso_dates:
        expected += " or ISO 8601 (yyyy-MM-dd)"

    def convert(raw: str) -> object:
        text = raw.strip()
        if not text:
            return None
        value = (
            _parse_custom(text, date_pattern)
            or (_parse_iso(text) if iso else None)
            or _parse_custom(text, datetime_pattern)
        )
        if value is None:
            raise ConversionError(f"{name}: {preview(text)} is not a date (expected {expected})")
        if value.time() != dt.time(0, 0):
            # D365 writes dates as "2011-01-31 00:00:00"; a real time of day is not a date.
            raise ConversionError(
                f"{name}: {preview(text)} has a time of day; a date field takes only the date"
            )
        return value.date()

    return convert


def _datetime(field: Field, fmt: SourceFormat) -> Converter:
    name = field.name
    pattern = _custom(fmt.datetime_format)
    iso = pattern is None or fmt.accept_iso_dates or _typed_source(fmt)
    if pattern is None:
        expected = "yyyy-MM-dd HH:mm:ss or ISO 8601"
    else:
        expected = fmt.datetime_format + (" or ISO 8601" if fmt.accept_iso_dates else "")
    utc = dt.UTC

    def convert(raw: str) -> object:
        text = raw.strip()
        if not text:
            return None
        value = _parse_custom(text, pattern) or (_parse_iso(text) if iso else None)
        if value is None:
            raise ConversionError(f"{name}: {preview(text)} is not a date and time (expected {expected})")
        # Naive values are UTC, as D365 stores and exports them.
        return value.replace(tzinfo=utc) if value.tzinfo is None else value.astimezone(utc)

    return convert


def _guid(field: Field) -> Converter:
    name = field.name

    def convert(raw: str) -> object:
        text = raw.strip()
        if not text:
            return None
        inner = text[1:-1] if text.startswith("{") and text.endswith("}") else text
        if len(inner) in (32, 36):
            try:
                return str(uuid.UUID(inner))
            except ValueError:
                pass
        raise ConversionError(f"{name}: {preview(text)} is not a GUID")

    return convert


def _enum(field: Field) -> Converter:
    name = field.name
    allowed = {v.casefold(): v for v in field.values}
    if not allowed:
        return _string(field)
    shown = ", ".join(field.values[:_ENUM_LISTED])
    if len(field.values) > _ENUM_LISTED:
        shown += f" (and {len(field.values) - _ENUM_LISTED} more)"

    def convert(raw: str) -> object:
        text = raw.strip()
        if not text:
            return None
        value = allowed.get(text.casefold())
        if value is None:
            raise ConversionError(f"{name}: {preview(text)} is not one of {shown}")
        return value

    return convert


def make_converter(field: Field, fmt: SourceFormat) -> Converter:
    """A function raw text -> typed value for `field` (None for blank text; no required check)."""
    try:
        return _cached_converter(field, fmt)
    except TypeError:  # an unhashable Field (values given as a list): build it uncached
        return _build_converter(field, fmt)


@functools.lru_cache(maxsize=1024)
def _cached_converter(field: Field, fmt: SourceFormat) -> Converter:
    return _build_converter(field, fmt)


def _build_converter(field: Field, fmt: SourceFormat) -> Converter:
    kind = field.type
    if kind == "string":
        return _string(field)
    if kind == "int":
        return _int(field, fmt)
    if kind == "decimal":
        return _decimal(field, fmt)
    if kind == "bool":
        return _bool(field, fmt)
    if kind == "date":
        return _date(field, fmt)
    if kind == "datetime":
        return _datetime(field, fmt)
    if kind == "guid":
        return _guid(field)
    if kind == "enum":
        return _enum(field)
    raise ValueError(f"field {field.name} has an unknown type {kind!r}")


def convert(field: Field, raw: str | None, fmt: SourceFormat) -> object:
    """Convert one raw value for `field`. Empty text is None; a required field then fails."""
    value = None if raw is None or raw == "" else make_converter(field, fmt)(raw)
    if value is None and field.required:
        raise ConversionError(f"{field.name} is required")
    return value
