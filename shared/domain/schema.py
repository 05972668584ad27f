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
    # The entity set name under /data (D365's "public collection name"); None: derived from the name
    # (shared/odata/names.collection_name).
    public_collection_name: str | None = None
    # What the user wrote where the parsed entity differs (keys spelled as sent, `required` as sent for
    # key fields, which are always required here): GET returns it. Not part of the entity's identity.
    written: dict = field(default_factory=dict, compare=False, hash=False)

    def field_map(self) -> dict[str, Field]:
        """Fields by upper-cased name, for case-insensitive lookups."""
        return {f.name.upper(): f for f in self.fields}


# Delimiters people write as words; the format keeps the word, readers and writers use the character.
DELIMITER_NAMES: dict[str, str] = {
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "space": " ",
}

# The yes/no words of a format that sets none: today's English words, matched ignoring case.
DEFAULT_TRUE_VALUES: tuple[str, ...] = ("true", "yes", "1")
DEFAULT_FALSE_VALUES: tuple[str, ...] = ("false", "no", "0")


@dataclass(frozen=True)
class SourceFormat:
    """How a source file is laid out. D365's CSV conventions are the defaults.

    Every setting holds the value as the user wrote it (a GET returns what the PUT sent): `delimiter`
    may be a word ("tab"), `encoding` an alias ("latin-1"), the date patterns .NET ("dd.MM.yyyy") or
    strftime ("%d.%m.%Y"). Readers and writers use the derived properties (`delimiter_char`, `codec`)
    and `conversion.strptime_pattern`, never a normalised copy stored in place of the user's text.
    """

    name: str
    kind: str = "csv"
    delimiter: str = ","
    text_qualifier: str = '"'
    encoding: str | None = None  # None: detect from the BOM, else UTF-8
    header_row: bool = True
    date_format: str = "yyyy-MM-dd"
    datetime_format: str = "yyyy-MM-dd HH:mm:ss"
    decimal_separator: str = "."
    thousands_separator: str = ""  # "": numbers carry no digit grouping (a grouped number is refused)
    true_values: tuple[str, ...] | None = None  # None: DEFAULT_TRUE_VALUES
    false_values: tuple[str, ...] | None = None  # None: DEFAULT_FALSE_VALUES
    # With a custom (non-ISO) date pattern, ISO 8601 values are refused unless this is set.
    accept_iso_dates: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def delimiter_char(self) -> str:
        """The delimiter character (a word such as "tab" resolved)."""
        if not self.delimiter:
            return ","
        return DELIMITER_NAMES.get(self.delimiter.lower(), self.delimiter)

    @property
    def codec(self) -> str | None:
        """Python's canonical codec name of `encoding` (None: detect from the BOM, else UTF-8)."""
        if not self.encoding:
            return None
        import codecs

        try:
            return codecs.lookup(self.encoding).name
        except LookupError:  # a stored format is validated on save; keep the text for the reader's error
            return self.encoding

    @property
    def yes_words(self) -> tuple[str, ...]:
        return self.true_values if self.true_values else DEFAULT_TRUE_VALUES

    @property
    def no_words(self) -> tuple[str, ...]:
        return self.false_values if self.false_values else DEFAULT_FALSE_VALUES


BUILTIN_FORMATS: dict[str, SourceFormat] = {
    "CSV": SourceFormat(name="CSV", kind="csv"),
    "CSV-UNICODE": SourceFormat(name="CSV-Unicode", kind="csv", encoding="utf-16-le"),
    "XML-ELEMENT": SourceFormat(name="XML-Element", kind="xml-element"),
    "XML-ATTRIBUTE": SourceFormat(name="XML-Attribute", kind="xml-attribute"),
    "EXCEL": SourceFormat(name="EXCEL", kind="excel"),
    "JSON": SourceFormat(name="JSON", kind="json"),
}
