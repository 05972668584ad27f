"""Entity schemas and source data formats: the typed shape that imports convert into."""

from __future__ import annotations

from dataclasses import dataclass, field

FIELD_TYPES: tuple[str, ...] = ("string", "int", "decimal", "bool", "date", "datetime", "guid", "enum")

# Kinds of reader a source data format uses.
FORMAT_KINDS: tuple[str, ...] = ("csv", "xml-element", "xml-attribute", "json", "excel")


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "string"
    required: bool = False
    max_length: int | None = None
    values: tuple[str, ...] = ()  # allowed values of an enum


@dataclass(frozen=True)
class Entity:
    name: str
    label: str
    fields: tuple[Field, ...]
    keys: tuple[str, ...]
    company_specific: bool = True

    def field_map(self) -> dict[str, Field]:
        """Fields by upper-cased name, for case-insensitive lookups."""
        return {f.name.upper(): f for f in self.fields}


@dataclass(frozen=True)
class SourceFormat:
    """How a source file is laid out. D365's CSV conventions are the defaults."""

    name: str
    kind: str = "csv"
    delimiter: str = ","
    text_qualifier: str = '"'
    encoding: str | None = None  # None: detect from the BOM, else UTF-8
    header_row: bool = True
    date_format: str = "%Y-%m-%d"
    datetime_format: str = "%Y-%m-%d %H:%M:%S"
    decimal_separator: str = "."
    extra: dict = field(default_factory=dict, compare=False, hash=False)


BUILTIN_FORMATS: dict[str, SourceFormat] = {
    "CSV": SourceFormat(name="CSV", kind="csv"),
    "CSV-UNICODE": SourceFormat(name="CSV-Unicode", kind="csv", encoding="utf-16-le"),
    "XML-ELEMENT": SourceFormat(name="XML-Element", kind="xml-element"),
    "XML-ATTRIBUTE": SourceFormat(name="XML-Attribute", kind="xml-attribute"),
    "EXCEL": SourceFormat(name="EXCEL", kind="excel"),
    "JSON": SourceFormat(name="JSON", kind="json"),
}
