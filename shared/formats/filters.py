"""Export filters: a small expression language, checked against the entity schema, compiled to a parameterized Table query.

An export project may restrict which records it exports, e.g.
`CUSTGROUP eq '10' and (CREDITLIMIT gt 1000 or not BLOCKED eq true)`. Filters are typed by the
entity's fields, so mistakes are reported when the project is saved, not at 3 a.m. in the export.
Values never become part of the query text: compile_filter emits `@pN` placeholders with a
parameters dict for azure-data-tables, which quotes and escapes them itself.

Language
    comparison  FIELD op literal   (or literal op FIELD)
    op          eq ne gt ge lt le  (also = != <> > >= < <=)
    logic       and, or, not, parentheses; `and` binds tighter than `or`
    literals    'text' ('' is a quote), 42, -3.5, 2024-01-31, 2024-01-31T10:00:00Z (or +01:00),
                true, false, null (only with eq/ne)
    functions   startswith(FIELD, 'text'), endswith(FIELD, 'text'), contains(FIELD, 'text') on string
                fields and `company`, optionally followed by `eq true`/`eq false` (OData's form); any
                other function is an UnsupportedFilterFunctionError
    fields      the entity's fields, case-insensitive; `company` for company-specific entities

Semantics (evaluate): a missing or null value equals only null, is unequal to every other
value, and is neither greater nor less than anything. Strings compare ordinally and
case-sensitively (as Azure Tables does); enum values, GUIDs and the company are canonicalized, so
their case does not matter in the filter.

Storage conventions compile_filter relies on: each field is stored under its own name; int as
Int64 plus a Double named `<FIELD>__num`; bool as Boolean; date as 'YYYY-MM-DD' string; datetime
as Edm.DateTime; guid as canonical lower-case string without braces; enum as the schema's
spelling; string as string; decimal as a string plus a Double named `<FIELD>__num`; company as
lower-case string under `company`; null values are not stored (the property is absent).

Numbers are compared through their Double shadow, never the field itself: azure-data-tables
renders an int parameter that fits 32 bits as an Int32 literal (`5`, not `5L`), and Azure Tables
never finds an Int64 property equal to an Int32 literal, so a query on the Int64 property would
miss rows. A float parameter is rendered as a Double literal, which the shadow matches. Ints with
|v| < 2**53 are exact as Doubles, so their comparisons (even `ne`) stay exact on the server; larger
ones are left to evaluate().

The compiled query is a *superset* prefilter: callers must still apply evaluate() to every
returned entity. That is what makes it exact where Table queries cannot be: decimals and very
large ints (compared through their Double shadow, or not at all), `ne` and `not` on optional
fields (a missing property never matches a Table comparison), null tests, and filters above
Azure's 15-comparison limit (the query then keeps what fits). Of the string functions, only
`startswith` narrows the Table query (a range `FIELD ge 'p' and FIELD lt 'q'`, q being p with its last
character's successor); `endswith`, `contains` and every negated function are decided by evaluate()
alone. docs/filters.md is the user's guide.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

from shared.domain.schema import Entity, Field

COMPANY_FIELD = "company"
COMPANY_PROPERTY = "company"
# The Double copy stored beside each int and decimal field (entity_repo.NUM_SUFFIX).
NUM_SHADOW_SUFFIX = "__num"
DECIMAL_SHADOW_SUFFIX = NUM_SHADOW_SUFFIX  # the former name
MAX_FILTER_LENGTH = 4000
# The filter travels in the Table query's URL, percent-encoded (a non-ASCII character takes up to 12
# characters there). Azurite (Node) refuses a request line over 16 KiB with 431; keep well below it.
MAX_FILTER_URL_LENGTH = 8000
MAX_NESTING = 32
MAX_COMPARISONS = 100
# Azure Table storage accepts at most 15 discrete comparisons in one $filter.
MAX_TABLE_COMPARISONS = 15
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Every int with a smaller magnitude is exactly a Double, and Doubles of larger ints never round
# onto it; str() of such a float is plain notation (it switches to exponents only from 1e16).
_EXACT_DOUBLE_INT = 2**53

OPS = ("eq", "ne", "gt", "ge", "lt", "le")
_SYMBOLS = {"=": "eq", "==": "eq", "!=": "ne", "<>": "ne", ">": "gt", ">=": "ge", "<": "lt", "<=": "le"}
_FLIP = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_NEGATE = {"eq": "ne", "ne": "eq", "gt": "le", "ge": "lt", "lt": "ge", "le": "gt"}
_ORDERED_TYPES = {"string", "int", "decimal", "date", "datetime"}
# Names Azure Tables reserves, or that are not valid OData property names: such fields are
# filtered by evaluate() only.
_SYSTEM_PROPERTIES = {"partitionkey", "rowkey", "timestamp", "etag"}
_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


class FilterError(ValueError):
    """The filter text is invalid for the entity; the message says what and where."""

    code = "InvalidFilter"


class UnsupportedFilterFunctionError(FilterError):
    """The filter calls a function the language does not have (tolower, substringof, length, ...)."""

    code = "UnsupportedFilterFunction"


# String functions: the name, and what it tests on a value `v` with the argument `a`.
FUNCTIONS = {
    "startswith": lambda v, a: v.startswith(a),
    "endswith": lambda v, a: v.endswith(a),
    "contains": lambda v, a: a in v,
}


# --------------------------------------------------------------------------------------------
# Expression tree


@dataclass(frozen=True)
class Comparison:
    field: str  # the entity's spelling, or COMPANY_FIELD
    op: str  # one of OPS
    value: object  # typed: str, int, Decimal, bool, date, datetime (UTC), None
    type: str  # the field's type ("string" for company)
    required: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[FilterExpr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[FilterExpr, ...]


@dataclass(frozen=True)
class Not:
    item: FilterExpr


@dataclass(frozen=True)
class Function:
    """`name(field, 'value')`, true when the field's value passes (a missing value never does); `negated`
    only after negation normal form (_nnf), where `not` moves into the leaves."""

    name: str  # a key of FUNCTIONS
    field: str
    value: str
    negated: bool = False


FilterExpr = Comparison | Function | And | Or | Not


# --------------------------------------------------------------------------------------------
# Tokenizer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:])
  | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?![\w.])
  | (?P<symbol>>=|<=|<>|!=|==|=|>|<)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # string datetime date number op lparen rparen word and or not true false null end
    text: str
    pos: int


_KEYWORDS = {"and", "or", "not", "true", "false", "null", *OPS}


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] == "'":
                raise FilterError(f"unterminated string starting at position {pos + 1}")
            raise FilterError(f"unexpected '{text[pos]}' at position {pos + 1}")
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "symbol":
            tokens.append(_Tok("op", _SYMBOLS[value], pos))
        elif kind == "word" and value.lower() in _KEYWORDS:
            low = value.lower()
            tokens.append(_Tok("op" if low in OPS else low, low, pos))
        elif kind != "ws":
            tokens.append(_Tok(kind, value, pos))
        pos = m.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


# --------------------------------------------------------------------------------------------
# Parser (recursive descent):  or := and ("or" and)* ; and := unary ("and" unary)* ;
# unary := "not" unary | "(" or ")" | comparison


_LITERAL_KINDS = {"string", "datetime", "date", "number", "true", "false", "null"}
_LITERAL_NAMES = {
    "string": "a string",
    "datetime": "a datetime",
    "date": "a date",
    "number": "a number",
    "true": "a boolean",
    "false": "a boolean",
    "null": "null",
}


class _Parser:
    def __init__(self, text: str, entity: Entity, company_names: tuple[str, ...] = (COMPANY_FIELD,)) -> None:
        self.text = text
        self.entity = entity
        self.company_names = {n.casefold() for n in company_names}
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.comparisons = 0
        self.fields = {f.name.casefold(): f for f in entity.fields}

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def where(self, tok: _Tok) -> str:
        return "at the end" if tok.kind == "end" else f"at position {tok.pos + 1}"

    def fail_unexpected(self, tok: _Tok, expected: str) -> FilterError:
        found = "the end of the filter" if tok.kind == "end" else f"'{tok.text}'"
        return FilterError(f"expected {expected} but found {found} {self.where(tok)}")

    def parse(self) -> FilterExpr:
        expr = self.parse_or()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail_unexpected(tok, "'and', 'or' or the end of the filter")
        return expr

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise FilterError(f"the filter is nested more than {MAX_NESTING} levels deep")

    def parse_or(self) -> FilterExpr:
        items = [self.parse_and()]
        while self.peek().kind == "or":
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> FilterExpr:
        items = [self.parse_unary()]
        while self.peek().kind == "and":
            self.take()
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_unary(self) -> FilterExpr:
        tok = self.peek()
        if tok.kind == "not":
            self.take()
            self.nest()
            item = self.parse_unary()
            self.depth -= 1
            return Not(item)
        if tok.kind == "lparen":
            self.take()
            self.nest()
            expr = self.parse_or()
            self.depth -= 1
            close = self.take()
            if close.kind != "rparen":
                raise self.fail_unexpected(close, "')'")
            return expr
        if tok.kind == "word" and self.tokens[self.i + 1].kind == "lparen":
            return self.parse_function()
        return self.parse_comparison()

    def parse_function(self) -> FilterExpr:
        """`name(FIELD, 'text')`, optionally compared with true or false (`startswith(A,'x') eq true`)."""
        name_tok = self.take()
        name = name_tok.text.lower()
        if name not in FUNCTIONS:
            hint = (
                " (for OData's substringof('x', FIELD) write contains(FIELD, 'x'))"
                if name == "substringof"
                else ""
            )
            raise UnsupportedFilterFunctionError(
                f"the function '{name_tok.text}' {self.where(name_tok)} is not supported; filters support "
                f"{', '.join(FUNCTIONS)}{hint} (docs/filters.md)"
            )
        self.take()  # (
        field_tok = self.take()
        if field_tok.kind != "word":
            raise self.fail_unexpected(field_tok, f"a field name as the first argument of {name}")
        for expected in ("comma", "string", "rparen"):
            tok = self.take()
            if tok.kind != expected:
                what = {
                    "comma": "','",
                    "string": f"a string as the second argument of {name}",
                    "rparen": "')'",
                }
                raise self.fail_unexpected(tok, what[expected])
            if expected == "string":
                lit = tok
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise FilterError(f"the filter has more than {MAX_COMPARISONS} comparisons")
        field_name, ftype, _ = self.resolve_field(field_tok)
        if ftype != "string":
            raise FilterError(
                f"{name} applies to string fields; field '{field_name}' is {_a(ftype)} field (use eq or ne)"
            )
        text = lit.text[1:-1].replace("''", "'")
        if field_name == COMPANY_FIELD:
            text = text.lower()
        expr: FilterExpr = Function(name, field_name, text)
        if self.peek().kind == "op" and self.peek().text in ("eq", "ne"):
            op = self.take()
            value = self.take()
            if value.kind not in ("true", "false"):
                raise self.fail_unexpected(value, f"true or false after '{name}(...) {op.text}'")
            if (value.kind == "true") != (op.text == "eq"):
                expr = Not(expr)
        return expr

    def parse_comparison(self) -> Comparison:
        left = self.take()
        if left.kind == "word":
            op = self.take()
            if op.kind != "op":
                raise self.fail_unexpected(op, "a comparison operator (eq ne gt ge lt le)")
            lit = self.take()
            if lit.kind not in _LITERAL_KINDS:
                raise self.fail_unexpected(lit, "a value")
            field_tok, op_name = left, op.text
        elif left.kind in _LITERAL_KINDS:
            # `5 lt QTY` reads as `QTY gt 5`.
            op = self.take()
            if op.kind != "op":
                raise self.fail_unexpected(op, "a comparison operator (eq ne gt ge lt le)")
            field_tok = self.take()
            if field_tok.kind != "word":
                raise self.fail_unexpected(field_tok, "a field name")
            lit, op_name = left, _FLIP[op.text]
        else:
            raise self.fail_unexpected(left, "a field name, 'not' or '('")
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise FilterError(f"the filter has more than {MAX_COMPARISONS} comparisons")
        return self.typed_comparison(field_tok, op_name, lit)

    def resolve_field(self, tok: _Tok) -> tuple[str, str, Field | None]:
        f = self.fields.get(tok.text.casefold())
        if f is not None:
            return f.name, f.type, f
        if self.entity.company_specific and tok.text.casefold() in self.company_names:
            return COMPANY_FIELD, "string", None
        names = [f.name for f in self.entity.fields]
        if self.entity.company_specific:
            names.append(COMPANY_FIELD if COMPANY_FIELD in self.company_names else "dataAreaId")
        raise FilterError(f"unknown field '{tok.text}'; the entity has {', '.join(names)}")

    def typed_comparison(self, field_tok: _Tok, op: str, lit: _Tok) -> Comparison:
        name, ftype, f = self.resolve_field(field_tok)
        required = bool(f and f.required)
        if lit.kind == "null":
            if op not in ("eq", "ne"):
                raise FilterError(f"'{name} {op} null' is not allowed; compare with null using eq or ne only")
            return Comparison(name, op, None, ftype, required)
        if op not in ("eq", "ne") and ftype not in _ORDERED_TYPES:
            raise FilterError(f"field '{name}' is {_a(ftype)} field; it supports only eq and ne, not {op}")
        value = self.convert(name, ftype, f, lit)
        if name == COMPANY_FIELD:
            value = str(value).lower()
        return Comparison(name, op, value, ftype, required)

    def convert(self, name: str, ftype: str, f: Field | None, lit: _Tok) -> object:
        def mismatch() -> FilterError:
            return FilterError(
                f"field '{name}' is {_a(ftype)} field; it cannot be compared with "
                f"{_LITERAL_NAMES[lit.kind]} ({lit.text}) {self.where(lit)}"
            )

        if ftype in ("string", "enum", "guid"):
            if lit.kind != "string":
                raise mismatch()
            text = lit.text[1:-1].replace("''", "'")
            if ftype == "guid":
                try:
                    return str(uuid.UUID(text.strip().strip("{}")))
                except ValueError:
                    raise FilterError(f"field '{name}' is a guid field; '{text}' is not a GUID") from None
            if ftype == "enum" and f is not None and f.values:
                for allowed in f.values:
                    if allowed.casefold() == text.casefold():
                        return allowed
                raise FilterError(f"field '{name}' has no value '{text}'; it allows {', '.join(f.values)}")
            return text
        if ftype in ("int", "decimal"):
            if lit.kind != "number":
                raise mismatch()
            number = Decimal(lit.text)
            if ftype == "decimal":
                return number
            if number != number.to_integral_value():
                raise FilterError(f"field '{name}' is an int field; {lit.text} is not a whole number")
            value = int(number)
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise FilterError(f"field '{name}' is an int field; {lit.text} is out of range")
            return value
        if ftype == "bool":
            if lit.kind not in ("true", "false"):
                raise mismatch()
            return lit.kind == "true"
        if ftype == "date":
            if lit.kind != "date":
                raise mismatch()
            return _parse_date(lit.text, name)
        if ftype == "datetime":
            if lit.kind == "date":
                # A date against a datetime means midnight UTC, the way D365 reads it.
                return datetime.combine(_parse_date(lit.text, name), time(0), tzinfo=UTC)
            if lit.kind != "datetime":
                raise mismatch()
            return _parse_datetime(lit.text, name)
        raise FilterError(
            f"field '{name}' has type '{ftype}', which filters do not support"
        )  # pragma: no cover


def _a(ftype: str) -> str:
    return f"an {ftype}" if ftype[0] in "aeiou" else f"a {ftype}"


def _parse_date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(f"'{text}' is not a valid date (for field '{name}')") from None


def _parse_datetime(text: str, name: str) -> datetime:
    t = text[:-1] + "+00:00" if text.endswith("Z") else text
    # Python's fromisoformat takes at most 6 fractional digits; .NET writes 7.
    t = re.sub(r"(\.\d{6})\d+", r"\1", t)
    try:
        value = datetime.fromisoformat(t)
    except ValueError:
        raise FilterError(f"'{text}' is not a valid datetime (for field '{name}')") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # D365 datetimes are UTC
    return value.astimezone(UTC)


def parse_filter(
    text: str, entity: Entity, *, company_names: tuple[str, ...] = (COMPANY_FIELD,)
) -> FilterExpr:
    """Parse and type-check a filter against the entity; raise FilterError with a clear reason.
    `company_names`: what the company of a company-specific entity is called in the text (the OData entity
    sets also accept D365's `dataAreaId`); the tree names it COMPANY_FIELD whatever it was called."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_FILTER_LENGTH} characters")
    if len(quote(text, safe="", errors="replace")) > MAX_FILTER_URL_LENGTH:
        raise FilterError(
            f"the filter is longer than {MAX_FILTER_URL_LENGTH} characters once URL-encoded "
            "(each non-ASCII character counts 6 to 12)"
        )
    if not text.strip():
        raise FilterError("the filter is empty")
    return _Parser(text, entity, company_names).parse()


# --------------------------------------------------------------------------------------------
# Canonical text


def _literal_text(c: Comparison) -> str:
    v = c.value
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S") + (f".{v.microsecond:06d}" if v.microsecond else "") + "Z"
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, int | Decimal):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def format_filter(expr: FilterExpr) -> str:
    """The canonical text of a filter (field spellings from the schema); parses back to the same tree."""
    if isinstance(expr, Comparison):
        return f"{expr.field} {expr.op} {_literal_text(expr)}"
    if isinstance(expr, Function):
        call = f"{expr.name}({expr.field}, '{expr.value.replace(chr(39), chr(39) * 2)}')"
        return f"not ({call})" if expr.negated else call
    if isinstance(expr, Not):
        return f"not ({format_filter(expr.item)})"
    joiner = " and " if isinstance(expr, And) else " or "
    return joiner.join(
        f"({format_filter(i)})" if not isinstance(i, Comparison | Function) else format_filter(i)
        for i in expr.items
    )


# --------------------------------------------------------------------------------------------
# In-memory evaluation


def _lookup(record: Mapping[str, object], name: str) -> object:
    if name in record:
        value = record[name]
    else:
        folded = name.casefold()
        value = next((v for k, v in record.items() if isinstance(k, str) and k.casefold() == folded), None)
    # azure-data-tables returns Int64 (and some other) values as EntityProperty(value, edm_type).
    if hasattr(value, "edm_type") and hasattr(value, "value"):
        value = value.value  # type: ignore[union-attr]
    return value


def _coerce(value: object, c: Comparison) -> object:
    """The record's value as the comparison's Python type, or None when it is absent or unreadable."""
    if value is None:
        return None
    t = c.type
    try:
        if c.field == COMPANY_FIELD:
            return str(value).lower()
        if t in ("string", "enum"):
            return str(value)
        if t == "guid":
            return str(uuid.UUID(str(value).strip().strip("{}")))
        if t == "int":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, int):
                return int(value)
            number = Decimal(str(value).strip())
            # 12.5 is no int (a decimal stored before the field became an int): unreadable, as when
            # browsing (shared/storage/entity_repo.typed_value), never truncated to 12.
            return int(number) if number == number.to_integral_value() else None
        if t == "decimal":
            return value if isinstance(value, Decimal) else Decimal(str(value).strip())
        if t == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text]
        if t == "date":
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            return date.fromisoformat(str(value).strip()[:10])
        if t == "datetime":
            if isinstance(value, datetime):
                dt = value
            elif isinstance(value, date):
                dt = datetime.combine(value, time(0))
            else:
                dt = datetime.fromisoformat(
                    re.sub(r"(\.\d{6})\d+", r"\1", str(value).strip().replace("Z", "+00:00"))
                )
            return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, TypeError, KeyError, InvalidOperation, ArithmeticError):
        return None
    return value  # pragma: no cover - every FIELD_TYPES member is handled above


def _compare(c: Comparison, record: Mapping[str, object]) -> bool:
    actual = _coerce(_lookup(record, c.field), c)
    if c.type == "enum" and isinstance(actual, str):
        actual = actual.casefold()
        expected: object = str(c.value).casefold() if c.value is not None else None
    else:
        expected = c.value
    if expected is None:
        return (actual is None) == (c.op == "eq")
    if actual is None:
        return c.op == "ne"
    if c.op == "eq":
        return actual == expected
    if c.op == "ne":
        return actual != expected
    try:
        if c.op == "gt":
            return actual > expected  # type: ignore[operator]
        if c.op == "ge":
            return actual >= expected  # type: ignore[operator]
        if c.op == "lt":
            return actual < expected  # type: ignore[operator]
        return actual <= expected  # type: ignore[operator]
    except TypeError:  # pragma: no cover - _coerce makes both sides the same type
        return False


def _call(f: Function, record: Mapping[str, object]) -> bool:
    """A string function on the record's value: ordinal and case-sensitive, as eq is; the company is
    compared in lower case, as it is stored. A missing value passes no function."""
    value = _lookup(record, f.field)
    if value is None:
        return False
    text = str(value).lower() if f.field == COMPANY_FIELD else str(value)
    return FUNCTIONS[f.name](text, f.value)


def evaluate(expr: FilterExpr, record: Mapping[str, object]) -> bool:
    """Whether a record (field name → value, as read from the store or a file) matches the filter."""
    if isinstance(expr, Comparison):
        return _compare(expr, record)
    if isinstance(expr, Function):
        return _call(expr, record) != expr.negated
    if isinstance(expr, Not):
        return not evaluate(expr.item, record)
    if isinstance(expr, And):
        return all(evaluate(i, record) for i in expr.items)
    return any(evaluate(i, record) for i in expr.items)


# --------------------------------------------------------------------------------------------
# Compilation to an Azure Table query
#
# Steps: push `not` down to the comparisons (negation normal form), map each comparison to a
# Table comparison that matches at least every record evaluate() accepts (or to TRUE, "no
# constraint"), simplify, keep within the 15-comparison limit, and render with placeholders.
# Because the tree has no `not` left and every leaf is a superset, and/or keep the superset
# property.


@dataclass(frozen=True)
class _True:
    pass


_TRUE = _True()


@dataclass(frozen=True)
class _Cmp:
    prop: str
    op: str
    value: object


@dataclass(frozen=True)
class _All:
    items: tuple[_Q, ...]


@dataclass(frozen=True)
class _Any:
    items: tuple[_Q, ...]


_Q = _True | _Cmp | _All | _Any


def _nnf(expr: FilterExpr, negate: bool = False) -> FilterExpr:
    if isinstance(expr, Function):
        return Function(expr.name, expr.field, expr.value, expr.negated != negate)
    if isinstance(expr, Not):
        return _nnf(expr.item, not negate)
    if isinstance(expr, And | Or):
        items = tuple(_nnf(i, negate) for i in expr.items)
        return (Or if negate else And)(items) if isinstance(expr, And) else (And if negate else Or)(items)
    if not negate:
        return expr
    if expr.value is None or expr.op in ("eq", "ne"):
        return Comparison(expr.field, _NEGATE[expr.op], expr.value, expr.type, expr.required)
    # not (x lt v) is true for x >= v and also when x is missing.
    flipped = Comparison(expr.field, _NEGATE[expr.op], expr.value, expr.type, expr.required)
    if expr.required:
        return flipped
    return Or((flipped, Comparison(expr.field, "eq", None, expr.type, expr.required)))


def _storage_value(c: Comparison) -> object:
    v = c.value
    if isinstance(v, date) and not isinstance(v, datetime):
        return v.isoformat()  # dates are stored as 'YYYY-MM-DD' strings, which sort correctly
    return v


def _leaf(c: Comparison, company_property: str) -> _Q:
    if c.value is None:
        return _TRUE  # Table queries cannot test for a missing property
    prop = company_property if c.field == COMPANY_FIELD else c.field
    if not _PROPERTY_NAME.match(prop) or prop.casefold() in _SYSTEM_PROPERTIES:
        return _TRUE
    if c.op == "ne" and not c.required:
        return _TRUE  # a missing property matches `ne` in evaluate() but never in a Table query
    if c.type == "int":
        # Compared through the Double shadow (see the module docstring): an int parameter would be
        # rendered as an Int32 literal, which never matches the Int64 property.
        number = int(c.value)  # type: ignore[call-overload]
        if abs(number) >= _EXACT_DOUBLE_INT:
            return _TRUE  # not exact as a Double; evaluate() decides
        # Below 2**53 the Double comparison gives exactly the int comparison, `ne` included,
        # whatever the stored value (rounding is monotonic and cannot land on this Double).
        return _Cmp(prop + NUM_SHADOW_SUFFIX, c.op, float(number))
    if c.type == "decimal":
        if c.op == "ne":
            return _TRUE  # different decimals can share a Double
        shadow = float(c.value)  # type: ignore[arg-type]
        # Only plain notation is safe: azure-data-tables writes str(float), and "1e+16" is not a
        # valid OData Double literal.
        if shadow != 0.0 and not 1e-4 <= abs(shadow) < 1e15:
            return _TRUE
        # Rounding to a Double may make distinct decimals equal, so strict bounds become
        # inclusive; evaluate() restores exactness.
        op = {"gt": "ge", "lt": "le"}.get(c.op, c.op)
        return _Cmp(prop + NUM_SHADOW_SUFFIX, op, shadow)
    return _Cmp(prop, c.op, _storage_value(c))


def _prefix_range(f: Function, company_property: str) -> _Q:
    """`startswith(F, 'p')` as `F ge 'p' and F lt 'q'`, q being p with its last character's successor: every
    string starting with p sorts in [p, q), in UTF-16 code units and in code points alike, as long as that
    character and its successor are single code units below the surrogates. Anything else (endswith,
    contains, a negation, an empty or unsuitable prefix) is left to evaluate()."""
    prop = company_property if f.field == COMPANY_FIELD else f.field
    if f.name != "startswith" or f.negated or not f.value or ord(f.value[-1]) >= 0xD7FF:
        return _TRUE
    if not _PROPERTY_NAME.match(prop) or prop.casefold() in _SYSTEM_PROPERTIES:
        return _TRUE
    upper = f.value[:-1] + chr(ord(f.value[-1]) + 1)
    return _All((_Cmp(prop, "ge", f.value), _Cmp(prop, "lt", upper)))


def _to_query(expr: FilterExpr, company_property: str) -> _Q:
    if isinstance(expr, Comparison):
        return _leaf(expr, company_property)
    if isinstance(expr, Function):
        return _prefix_range(expr, company_property)
    assert not isinstance(expr, Not)  # removed by _nnf
    items = [_to_query(i, company_property) for i in expr.items]
    if isinstance(expr, And):
        kept = tuple(i for i in items if not isinstance(i, _True))
        if not kept:
            return _TRUE
        return kept[0] if len(kept) == 1 else _All(kept)
    if any(isinstance(i, _True) for i in items):
        return _TRUE
    return items[0] if len(items) == 1 else _Any(tuple(items))


def _count(q: _Q) -> int:
    if isinstance(q, _Cmp):
        return 1
    if isinstance(q, _All | _Any):
        return sum(_count(i) for i in q.items)
    return 0


def _fit(q: _Q, budget: int) -> _Q:
    """Drop constraints until the query has at most `budget` comparisons, staying a superset.

    Dropping a conjunct widens the result; an `or` cannot lose a branch, so it stays whole or
    becomes TRUE.
    """
    if _count(q) <= budget:
        return q
    if isinstance(q, _All):
        kept: list[_Q] = []
        for item in q.items:
            fitted = _fit(item, budget)
            if not isinstance(fitted, _True):
                kept.append(fitted)
                budget -= _count(fitted)
        if not kept:
            return _TRUE
        return kept[0] if len(kept) == 1 else _All(tuple(kept))
    return _TRUE


def _render(q: _Q, params: dict[str, object], prefix: str, nested: bool = False) -> str:
    if isinstance(q, _Cmp):
        key = f"{prefix}{len(params)}"
        params[key] = q.value
        # azure-data-tables substitutes a placeholder only when it is a whole space-separated
        # word, so "@p0" is always followed by a space or the end, never by ")".
        return f"{q.prop} {q.op} @{key}"
    assert isinstance(q, _All | _Any)
    joiner = " and " if isinstance(q, _All) else " or "
    text = joiner.join(_render(i, params, prefix, nested=True) for i in q.items)
    return f"( {text} )" if nested else text


def compile_filter(
    expr: FilterExpr,
    *,
    company_property: str = COMPANY_PROPERTY,
    param_prefix: str = "p",
    max_comparisons: int = MAX_TABLE_COMPARISONS,
) -> tuple[str, dict[str, object]]:
    """Compile to an Azure Table `$filter` with `@pN` placeholders and its parameters.

    Use as `table.query_entities(query_filter, parameters=params)`, then keep only the entities
    for which evaluate() is true. An empty string means "no server-side constraint" (list all).
    The text only ever contains property names from the schema, operators, `and`/`or`,
    parentheses and placeholders; every value travels in `params`. Placeholders are separated by
    spaces, as azure-data-tables requires, so the text can be wrapped as `( ... )` and combined
    with other conditions; `max_comparisons` leaves room for theirs within Azure's 15.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", param_prefix):
        raise ValueError(f"'{param_prefix}' is not a usable parameter prefix")
    q = _fit(_to_query(_nnf(expr), company_property), max_comparisons)
    if isinstance(q, _True):
        return "", {}
    params: dict[str, object] = {}
    return _render(q, params, param_prefix), params
