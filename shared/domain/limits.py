"""The bounds of every configuration value (entities, formats, projects, jobs), in one place.

Each number below is enforced by shared.domain.config (a violation is a 400 ValidationError whose message
names the field, e.g. `fields[3].maxLength`, and the limit) and stated again in docs/openapi.yaml
(maxLength, maxItems, minimum, maximum, pattern, enum); tests/unit/domain/test_config_limits.py checks
that the two agree. Lengths count characters (code points), counts count list items.

Why bounds at all: a configuration document is parsed again on every cache miss of every worker, its
values size loops (fields, enum values) and date arithmetic (recurrences, redelivery), and its strings
end up in file names, manifests and error messages. Each maximum is generous for real D365-style
configuration and small enough that no value can cost memory or time out of proportion.
"""

from __future__ import annotations

from datetime import UTC, datetime

# Names and free text ---------------------------------------------------------------------------------

NAME_MAX_LENGTH = 64
"""Entity, format, transform and project names: 1-64 letters, digits, '_' or '-', starting with a letter
(they become Table row keys, blob names and URL segments)."""

FIELD_NAME_MAX_LENGTH = 128
"""Entity field names: letters, digits and '_' (they become Table property names, which allow 255)."""

LABEL_MAX_LENGTH = 128
"""An entity's label (what D365 clients send as `entity`); it also names the entity's file in an exported
package, so it stays well under a file name's 255 bytes."""

REFERENCE_MAX_LENGTH = LABEL_MAX_LENGTH
"""A project entity's `entity`: an entity's name or its label."""

DESCRIPTION_MAX_LENGTH = 1000
"""Project and job descriptions (a project's description goes into the package manifest)."""

JOB_NAME_MAX_LENGTH = 128
"""A job's display name (not blank)."""

COMPANY_MAX_LENGTH = 10
"""A job's default legal entity: letters, digits, '_' or '-'. D365's legal entity IDs (DataAreaId) have at
most 4 characters; the rest is room for other systems. The company is part of Table partition keys, which
must not hold '/', '\\', '#', '?' or control characters; the pattern keeps all of those out."""

COMPANY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,9}$"

COLUMN_MAX_LENGTH = 256
"""A mapping rule's `source`: the column, element or key name in the file."""

DEFAULT_MAX_LENGTH = 1024
"""A mapping rule's string `default`."""

SHEET_MAX_LENGTH = 31
"""An Excel worksheet name: Excel allows at most 31 characters."""

FILTER_MAX_LENGTH = 4000
"""An export project's filter expression; the same as shared.formats.filters.MAX_FILTER_LENGTH."""

PATTERN_MAX_LENGTH = 64
BOOL_WORDS_MAX = 20  # yes (or no) words of a format
BOOL_WORD_MAX_LENGTH = 40
CONVERSIONS_MAX = 500  # value conversions of one mapping item
"""A format's `dateFormat` and `datetimeFormat` patterns."""

ENCODING_MAX_LENGTH = 40
"""A format's `encoding` name (the longest Python text codec alias is under 30 characters)."""

ENUM_VALUE_MAX_LENGTH = 256
"""One allowed value of an enum field."""

GUID_MAX_LENGTH = 64
"""A GUID as text, braces and a `urn:uuid:` prefix included (36 characters without them)."""

# Counts --------------------------------------------------------------------------------------------------

MAX_ROW_PROPERTIES = 252
"""Custom properties of an Azure Table entity (255 less PartitionKey, RowKey and Timestamp). Source:
learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model ("Property limits")."""

FIELDS_MAX = MAX_ROW_PROPERTIES - 2
"""Fields of an entity: each row also stores its company and its modification time. Ints and decimals
store a Double shadow too, so an entity with numeric fields reaches the row limit sooner (checked)."""

KEYS_MAX = 10
"""Key fields of an entity (they are joined into the Table row key)."""

ENUM_VALUES_MAX = 1000
"""Allowed values of one enum field."""

PROJECT_ENTITIES_MAX = 250
"""Entities of one project (each is one file of a data package)."""

MAPPING_RULES_MAX = 500
"""Mapping rules of one project entity: a rule per field, twice over, leaves room for defaults."""

TRANSFORMS_MAX = 10
"""XSLT transforms applied in turn to one project entity's input."""

POLICY_ENTRIES_MAX = 100
"""Entries (applications) of one job's authorization policy."""

# Numbers and ranges ------------------------------------------------------------------------------------

STRING_MAX_LENGTH = 32_768
"""The largest `maxLength` of a string field: an Azure Table String property holds up to 64 KiB of UTF-16,
32K characters. Source: learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model
("Property types")."""

SEQUENCE_MAX = 10_000
"""A project entity's `sequence` (0 … this): the order of the files in a package."""

REDELIVERY_MINUTES_MIN = 1
REDELIVERY_MINUTES_MAX = 10_080
"""A job's `redeliveryMinutes`: how long a dequeued outbound message stays hidden before it is offered
again; at most 7 days (the longest visibility timeout of an Azure Storage queue message, too)."""

INTERVAL_MIN = 1
INTERVAL_MAX = 10_000
"""Recurrence and monitoring `interval`, in the job's unit. Wide enough for "every 1440 minutes" and
"every 120 months"; with dates bounded below, every due time stays far inside datetime's range."""

RECURRENCE_COUNT_MIN = 1
RECURRENCE_COUNT_MAX = 1_000_000
"""A recurrence's `count` (number of occurrences); every minute for a year is 525,600."""

BACKLOG_THRESHOLD_MIN = 1
BACKLOG_THRESHOLD_MAX = 1_000_000
"""Monitoring's `backlogThreshold`: waiting messages that dispatch processing early."""

DATETIME_MIN = datetime(2000, 1, 1, tzinfo=UTC)
DATETIME_MAX = datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
"""Recurrence `start` and `end`: within the years 2000-2099, both as written and in UTC (so the stored
UTC value is in range too). Unbounded dates overflowed datetime arithmetic (year 1 with an offset)."""

DATETIME_PATTERN = r"^20[0-9]{2}-[0-9]{2}-[0-9]{2}"
"""What the OpenAPI spec states of the same range: an ISO-8601 date-time in the years 2000-2099."""

# Text encodings ----------------------------------------------------------------------------------------

NOT_FILE_ENCODINGS = frozenset(
    {"undefined", "idna", "punycode", "unicode-escape", "raw-unicode-escape", "charmap"}
)
"""Codecs the registry flags as text encodings that still describe no file's characters: `undefined`
fails on every byte, `idna`/`punycode` encode host names, the escape codecs Python literals, `charmap`
needs a mapping table. Refused like the bytes-to-bytes codecs (base64, zlib, rot13, hex, ...), which the
registry's `_is_text_encoding` flag marks False. docs/openapi.yaml lists the canonical names that remain."""
