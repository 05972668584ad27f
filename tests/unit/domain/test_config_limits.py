"""Configuration values are bounded and meaningful: every violation is a ValidationError (400) whose message
names the field and the limit, the maxima themselves are accepted, and docs/openapi.yaml states the same
numbers as shared.domain.limits."""

from __future__ import annotations

import codecs
import encodings
import encodings.aliases
import pkgutil
from pathlib import Path

import pytest
import yaml

from shared.domain import config, limits
from shared.domain.config import MAX_ROW_PROPERTIES, parse_entity, parse_format, parse_job, parse_project
from shared.errors import ValidationError

SPEC_PATH = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
GUID = "6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"


def entity(fields, **extra):
    return {"keys": ["F0"], "fields": fields, **extra}


def project(**extra):
    return {"operation": "export", "entities": [{"entity": "E"}], **extra}


def project_entity(**extra):
    return project(entities=[{"entity": "E", **extra}])


def job(**extra):
    return {"name": "j", "project": "P", **extra}


def refused(parse, *args) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse(*args)
    assert info.value.status == 400
    return info.value


# The Table row limit (kept from before) ----------------------------------------------------------------


def test_a_wide_entity_within_the_row_limit_is_accepted():
    fields = [{"name": f"F{i}"} for i in range(MAX_ROW_PROPERTIES - 2)]
    assert len(parse_entity("Wide", entity(fields)).fields) == MAX_ROW_PROPERTIES - 2


def test_numeric_fields_count_twice_against_the_row_limit():
    fields = [{"name": "F0"}] + [{"name": f"N{i}", "type": "int"} for i in range(MAX_ROW_PROPERTIES // 2)]
    with pytest.raises(ValidationError, match="ints and decimals count twice"):
        parse_entity("TooWide", entity(fields))


# Each violation names the field and the limit -------------------------------------------------------------

F0 = {"name": "F0"}
CASES = [
    # (parser, name, body, fragment of the message, code)
    (
        parse_entity,
        "E",
        entity([F0], label="x" * 200_000),
        "label is 200000 characters long; the limit is 128",
    ),
    (
        parse_entity,
        "E",
        entity([F0, {"name": "G", "type": "enum", "values": [str(i) for i in range(100_000)]}]),
        "fields[1].values has 100000 items; the limit is 1000",
    ),
    (
        parse_entity,
        "E",
        entity([F0, {"name": "G", "type": "enum", "values": ["a" * 257]}]),
        "fields[1].values[0] is 257 characters long; the limit is 256",
    ),
    (
        parse_entity,
        "E",
        entity([F0, {"name": "G", "type": "enum", "values": ["a", "a"]}]),
        "fields[1].values lists a value twice",
    ),
    (
        parse_entity,
        "E",
        entity([F0, {"name": "A"}, {"name": "B"}, {"name": "G", "maxLength": 10**30}]),
        "fields[3].maxLength must be between 1 and 32768",
    ),
    (parse_entity, "E", entity([F0, {"name": "G", "maxLength": 0}]), "fields[1].maxLength must be between 1"),
    (
        parse_entity,
        "E",
        entity([{"name": f"F{i}"} for i in range(251)]),
        "fields has 251 items; the limit is 250",
    ),
    (
        parse_entity,
        "E",
        {"keys": [f"F{i}" for i in range(11)], "fields": [{"name": f"F{i}"} for i in range(11)]},
        "keys has 11 items; the limit is 10",
    ),
    (parse_entity, "E", {"keys": ["F0", "f0"], "fields": [F0]}, "keys: 'f0' is listed twice"),
    (parse_entity, "E", entity([{"name": "F" * 129}]), "fields[0].name"),
    (parse_entity, "E" * 65, entity([F0]), "1-64 letters"),
    (parse_entity, "E", entity([F0], companySpecific="yes"), "companySpecific must be true or false"),
    (parse_format, "F", {"encoding": "rot13"}, "encoding 'rot13' is not a text encoding"),
    (parse_format, "F", {"encoding": "base64"}, "encoding 'base64' is not a text encoding"),
    (parse_format, "F", {"encoding": "zlib"}, "encoding 'zlib' is not a text encoding"),
    (parse_format, "F", {"encoding": "undefined"}, "encoding 'undefined' is not a text encoding"),
    (parse_format, "F", {"encoding": "unicode_escape"}, "is not a text encoding"),
    (parse_format, "F", {"encoding": "no-such-codec"}, "is not a text encoding"),
    (parse_format, "F", {"encoding": ""}, "is not a text encoding"),
    (parse_format, "F", {"encoding": "u" * 41}, "encoding is 41 characters long; the limit is 40"),
    (parse_format, "F", {"delimiter": "\n"}, "delimiter must be a single character"),
    (parse_format, "F", {"delimiter": ";;"}, "delimiter must be a single character"),
    (parse_format, "F", {"textQualifier": "\r"}, "textQualifier must be one character (not a line break)"),
    (parse_format, "F", {"textQualifier": "''"}, "textQualifier must be one character"),
    (
        parse_format,
        "F",
        {"delimiter": "'", "textQualifier": "'"},
        "textQualifier must differ from the delimiter",
    ),
    (parse_format, "F", {"dateFormat": "y" * 65}, "dateFormat is 65 characters long; the limit is 64"),
    (parse_format, "F", {"headerRow": "true"}, "headerRow must be true or false"),
    (
        parse_project,
        "P",
        project(description="d" * 1001),
        "description is 1001 characters long; the limit is 1000",
    ),
    (parse_project, "P", project(filter="x" * 4001), "filter is 4001 characters long; the limit is 4000"),
    (parse_project, "P", project(neutralizeFormulas=1), "neutralizeFormulas must be true or false"),
    (
        parse_project,
        "P",
        project(entities=[{"entity": f"E{i}"} for i in range(251)]),
        "entities has 251 items; the limit is 250",
    ),
    (parse_project, "P", project_entity(entity="e" * 129), "entities[0].entity is 129 characters long"),
    (parse_project, "P", project_entity(entity="  "), "entities[0].entity must not be empty"),
    (parse_project, "P", project_entity(sequence=10_001), "entities[0].sequence must be between 0 and 10000"),
    (
        parse_project,
        "P",
        project_entity(sheet="s" * 32),
        "entities[0].sheet is 32 characters long; the limit is 31",
    ),
    (parse_project, "P", project_entity(format="f" * 65), "entities[0].format is 65 characters long"),
    (
        parse_project,
        "P",
        project_entity(transforms=[f"T{i}" for i in range(11)]),
        "entities[0].transforms has 11 items; the limit is 10",
    ),
    (parse_project, "P", project_entity(transforms=["../x"]), "entities[0].transforms[0]: transform name"),
    (
        parse_project,
        "P",
        project_entity(mapping=[{"target": "A", "source": "S"}] * 501),
        "entities[0].mapping has 501 items; the limit is 500",
    ),
    (
        parse_project,
        "P",
        project_entity(mapping=[{"target": "A", "source": "s" * 257}]),
        "entities[0].mapping[0].source is 257 characters long; the limit is 256",
    ),
    (
        parse_project,
        "P",
        project_entity(mapping=[{"target": "A", "default": "d" * 1025}]),
        "entities[0].mapping[0].default is 1025 characters long; the limit is 1024",
    ),
    (
        parse_project,
        "P",
        project_entity(mapping=[{"target": "A", "default": 10**5000}]),
        "entities[0].mapping[0].default must be a number between",
    ),
    (
        parse_project,
        "P",
        project_entity(mapping=[{"target": "A", "default": float("inf")}]),
        "entities[0].mapping[0].default must be a number between",
    ),
    (parse_job, GUID, job(redeliveryMinutes=10**18), "redeliveryMinutes must be between 1 and 10080"),
    (parse_job, GUID, job(redeliveryMinutes=0), "redeliveryMinutes must be between 1 and 10080"),
    (parse_job, GUID, job(redeliveryMinutes=1.5), "redeliveryMinutes must be an integer"),
    (parse_job, GUID, job(redeliveryMinutes=True), "redeliveryMinutes must be an integer"),
    (parse_job, GUID, job(name="n" * 129), "name is 129 characters long; the limit is 128"),
    (parse_job, GUID, job(description="d" * 1001), "description is 1001 characters long; the limit is 1000"),
    (parse_job, GUID, job(project="p" * 65), "project is 65 characters long; the limit is 64"),
    (parse_job, GUID, job(company="a/b"), "company 'a/b' is not a legal entity ID: 1-10 letters"),
    (parse_job, GUID, job(company="c" * 11), "1-10 letters"),
    (parse_job, GUID, job(enabled="false"), "enabled must be true or false"),
    (
        parse_job,
        GUID,
        job(authorizationPolicy=[{"applicationId": GUID}] * 101),
        "authorizationPolicy has 101 items; the limit is 100",
    ),
    (
        parse_job,
        GUID,
        job(recurrence={"interval": 10_001}),
        "recurrence.interval must be between 1 and 10000",
    ),
    (parse_job, GUID, job(recurrence={"count": 1_000_001}), "recurrence.count must be between 1 and 1000000"),
    (
        parse_job,
        GUID,
        job(monitoring={"interval": 10**30}),
        "monitoring.interval must be between 1 and 10000",
    ),
    (
        parse_job,
        GUID,
        job(monitoring={"backlogThreshold": 0}),
        "monitoring.backlogThreshold must be between 1 and 1000000",
    ),
    (
        parse_job,
        GUID,
        job(recurrence={"start": "1999-12-31T23:59:59Z"}),
        "recurrence.start must be between 2000-01-01T00:00:00Z and 2099-12-31T23:59:59Z",
    ),
    # Year 1 with an offset overflowed datetime when converted to UTC.
    (
        parse_job,
        GUID,
        job(recurrence={"start": "0001-01-01T00:00:00+05:00"}),
        "recurrence.start must be between",
    ),
    (parse_job, GUID, job(recurrence={"end": "9999-12-31T23:59:59-05:00"}), "recurrence.end must be between"),
    # Written in range, out of range in UTC (what would be stored).
    (
        parse_job,
        GUID,
        job(recurrence={"start": "2000-01-01T00:00:00+05:00"}),
        "recurrence.start must be between",
    ),
    (
        parse_job,
        GUID,
        job(recurrence={"start": "20260101"}),
        "recurrence.start must be an ISO-8601 date-time",
    ),
]


@pytest.mark.parametrize(("parse", "name", "body", "fragment"), CASES)
def test_each_violation_is_a_400_that_names_the_field_and_the_limit(parse, name, body, fragment):
    error = refused(parse, name, body)
    assert fragment in error.message
    assert len(error.message) < 400  # quotes what was sent, never all of it


def test_limit_violations_have_codes_of_their_own():
    assert refused(parse_entity, "E", entity([F0], label="x" * 129)).code == "ValueTooLong"
    assert refused(parse_job, GUID, job(redeliveryMinutes=10**18)).code == "OutOfRange"
    assert refused(parse_job, GUID, job(authorizationPolicy=[{}] * 101)).code == "TooManyItems"
    assert refused(parse_format, "F", {"encoding": "zlib"}).code == "UnknownEncoding"


def test_a_body_with_many_unknown_fields_gets_a_short_message():
    error = refused(parse_entity, "E", entity([F0], **{f"k{i}": 1 for i in range(100_000)}))
    assert "unknown field(s) k0, k1, k2, k3, k4 and 99995 more" in error.message
    assert len(error.message) < 400


# The maxima themselves are accepted -------------------------------------------------------------------------


def test_every_maximum_is_accepted():
    e = parse_entity(
        "E" * 64,
        {
            "label": "L" * limits.LABEL_MAX_LENGTH,
            "keys": [f"F{i}" for i in range(limits.KEYS_MAX)],
            "fields": [{"name": f"F{i}"} for i in range(limits.KEYS_MAX)]
            + [{"name": "S", "maxLength": limits.STRING_MAX_LENGTH}]
            + [
                {
                    "name": "N",
                    "type": "enum",
                    "values": [
                        f"{i:0{limits.ENUM_VALUE_MAX_LENGTH}d}" for i in range(limits.ENUM_VALUES_MAX)
                    ],
                }
            ],
        },
    )
    assert len(e.keys) == limits.KEYS_MAX and e.field_map()["S"].max_length == limits.STRING_MAX_LENGTH
    p = parse_project(
        "P",
        {
            "operation": "export",
            "description": "d" * limits.DESCRIPTION_MAX_LENGTH,
            "filter": "x" * limits.FILTER_MAX_LENGTH,
            "entities": [
                {
                    "entity": "e" * limits.REFERENCE_MAX_LENGTH,
                    "sequence": limits.SEQUENCE_MAX,
                    "sheet": "s" * limits.SHEET_MAX_LENGTH,
                    "transforms": [f"T{i}" for i in range(limits.TRANSFORMS_MAX)],
                    "mapping": [{"source": "s" * limits.COLUMN_MAX_LENGTH, "target": "A"}]
                    + [{"target": "B", "default": "d" * limits.DEFAULT_MAX_LENGTH}]
                    + [{"target": "C", "default": 2**63 - 1}, {"target": "D", "default": -(2**63)}]
                    + [{"target": "A", "source": "S"}] * (limits.MAPPING_RULES_MAX - 4),
                }
            ]
            + [{"entity": f"E{i}"} for i in range(limits.PROJECT_ENTITIES_MAX - 1)],
        },
    )
    assert len(p.entities) == limits.PROJECT_ENTITIES_MAX
    j = parse_job(
        GUID,
        {
            "name": "n" * limits.JOB_NAME_MAX_LENGTH,
            "project": "P" * limits.NAME_MAX_LENGTH,
            "description": "d" * limits.DESCRIPTION_MAX_LENGTH,
            "company": "USMF_2-" + "x" * 3,
            "redeliveryMinutes": limits.REDELIVERY_MINUTES_MAX,
            "recurrence": {
                "unit": "months",
                "interval": limits.INTERVAL_MAX,
                "start": "2000-01-01T00:00:00Z",
                "count": limits.RECURRENCE_COUNT_MAX,
            },
            "monitoring": {"interval": limits.INTERVAL_MAX, "backlogThreshold": limits.BACKLOG_THRESHOLD_MAX},
            "authorizationPolicy": [{"applicationId": GUID}] * limits.POLICY_ENTRIES_MAX,
        },
    )
    assert (j.company, j.legal_entity) == ("USMF_2-xxx", "usmf_2-xxx")  # as written; the ID in lower case
    assert j.redelivery_minutes == limits.REDELIVERY_MINUTES_MAX
    end = parse_job(
        GUID, job(recurrence={"start": "2099-12-31T18:00:00-05:00", "end": "2099-12-31T23:59:59Z"})
    )
    assert end.recurrence.end == limits.DATETIME_MAX.replace(microsecond=0)


def test_null_means_the_default():
    j = parse_job(GUID, job(redeliveryMinutes=None, description=None, enabled=None, mode=None))
    assert (j.redelivery_minutes, j.description, j.enabled, j.mode) == (30, "", True, "file")
    p = parse_project("P", project(entities=[{"entity": "E", "sequence": None, "format": None}]))
    assert (p.entities[0].sequence, p.entities[0].format) == (1, "CSV")
    f = parse_format("F", {"delimiter": None, "decimalSeparator": None, "encoding": None})
    assert (f.delimiter, f.decimal_separator, f.encoding) == (",", ".", None)


# Encodings: the codec registry's text-encoding flag ------------------------------------------------------


def registry_names() -> set[str]:
    names = set(encodings.aliases.aliases.values())
    return names | {m.name for m in pkgutil.iter_modules(encodings.__path__)}


def text_encodings() -> set[str]:
    """Canonical names of the text encodings the app accepts: the registry's flag, less the ones that
    describe no file's characters."""
    found = set()
    for name in registry_names():
        try:
            info = codecs.lookup(name)
        except LookupError:
            continue
        if info._is_text_encoding and info.name not in limits.NOT_FILE_ENCODINGS:
            found.add(info.name)
    return found


@pytest.mark.parametrize(
    "name", ["rot13", "rot_13", "base64", "base_64", "zlib", "hex", "bz2", "quopri", "uu"]
)
def test_every_bytes_codec_is_refused(name):
    assert not codecs.lookup(name)._is_text_encoding  # what the check relies on
    assert "is not a text encoding" in refused(parse_format, "F", {"encoding": name}).message


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("utf-8", "utf-8"), ("UTF8", "utf-8"), ("latin-1", "iso8859-1"), ("windows-1252", "cp1252"),
     ("UTF-16LE", "utf-16-le"), ("utf-8-sig", "utf-8-sig"), ("shift_jis", "shift_jis")],
)  # fmt: skip
def test_text_encodings_and_their_aliases_are_kept_as_written(name, canonical):
    # Issue 12: a GET returns the encoding as the PUT sent it; readers and writers use the canonical codec.
    fmt = parse_format("F", {"encoding": name})
    assert fmt.encoding == name and fmt.codec == canonical
    assert config.format_to_json(fmt)["encoding"] == name


def test_every_text_encoding_is_accepted_and_every_other_codec_refused():
    accepted = text_encodings()
    assert {"utf-8", "utf-16-le", "cp1252", "iso8859-1"} <= accepted
    for name in registry_names():
        try:
            canonical = codecs.lookup(name).name
        except LookupError:
            continue
        if canonical in accepted:
            assert parse_format("F", {"encoding": name}).codec == canonical
        else:
            refused(parse_format, "F", {"encoding": name})


# Stored documents parse back the same -----------------------------------------------------------------------


def test_stored_documents_parse_back_the_same():
    p = parse_project("P", project(neutralizeFormulas=False, filter="A eq 'x'"))
    assert p.neutralize_formulas is False
    stored = config.project_to_json(p)
    assert parse_project("P", {k: v for k, v in stored.items() if k != "name"}) == p
    assert parse_project("P", project()).neutralize_formulas is True
    fmt = parse_format(
        "F", {"delimiter": "tab", "textQualifier": "", "encoding": "latin1", "dateFormat": "dd.MM.yyyy"}
    )
    stored = config.format_to_json(fmt)
    assert parse_format("F", {k: v for k, v in stored.items() if k != "name"}) == fmt
    j = parse_job(GUID, job(recurrence={"start": "2030-06-01T12:00:00+02:00", "count": 3}, company="USMF"))
    assert parse_job(GUID, config.job_to_json(j)) == j


# docs/openapi.yaml states the same limits ------------------------------------------------------------------


@pytest.fixture(scope="module")
def schemas() -> dict:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)["components"]["schemas"]


def test_the_spec_states_the_same_limits(schemas):
    def prop(schema, name):
        return schemas[schema]["properties"][name]

    expected = [
        (prop("Field", "name"), "maxLength", limits.FIELD_NAME_MAX_LENGTH),
        (prop("Field", "maxLength"), "maximum", limits.STRING_MAX_LENGTH),
        (prop("Field", "values"), "maxItems", limits.ENUM_VALUES_MAX),
        (prop("Field", "values")["items"], "maxLength", limits.ENUM_VALUE_MAX_LENGTH),
        (prop("Entity", "label"), "maxLength", limits.LABEL_MAX_LENGTH),
        (prop("Entity", "keys"), "maxItems", limits.KEYS_MAX),
        (prop("Entity", "fields"), "maxItems", limits.FIELDS_MAX),
        (prop("Format", "encoding"), "maxLength", limits.ENCODING_MAX_LENGTH),
        (prop("Format", "dateFormat"), "maxLength", limits.PATTERN_MAX_LENGTH),
        (prop("Format", "datetimeFormat"), "maxLength", limits.PATTERN_MAX_LENGTH),
        (prop("Format", "trueValues"), "maxItems", limits.BOOL_WORDS_MAX),
        (prop("Format", "trueValues")["items"], "maxLength", limits.BOOL_WORD_MAX_LENGTH),
        (prop("Format", "falseValues"), "maxItems", limits.BOOL_WORDS_MAX),
        (prop("Format", "falseValues")["items"], "maxLength", limits.BOOL_WORD_MAX_LENGTH),
        (prop("MappingRule", "conversions"), "maxItems", limits.CONVERSIONS_MAX),
        (prop("ValueConversion", "from"), "maxLength", limits.DEFAULT_MAX_LENGTH),
        (prop("ValueConversion", "to"), "maxLength", limits.DEFAULT_MAX_LENGTH),
        (prop("MappingRule", "source"), "maxLength", limits.COLUMN_MAX_LENGTH),
        (prop("MappingRule", "target"), "maxLength", limits.FIELD_NAME_MAX_LENGTH),
        (prop("MappingRule", "default")["anyOf"][0], "maxLength", limits.DEFAULT_MAX_LENGTH),
        (prop("ProjectEntity", "entity"), "maxLength", limits.REFERENCE_MAX_LENGTH),
        (prop("ProjectEntity", "format"), "maxLength", limits.NAME_MAX_LENGTH),
        (prop("ProjectEntity", "sequence"), "maximum", limits.SEQUENCE_MAX),
        (prop("ProjectEntity", "mapping"), "maxItems", limits.MAPPING_RULES_MAX),
        (prop("ProjectEntity", "transforms"), "maxItems", limits.TRANSFORMS_MAX),
        (prop("ProjectEntity", "sheet"), "maxLength", limits.SHEET_MAX_LENGTH),
        (prop("Project", "description"), "maxLength", limits.DESCRIPTION_MAX_LENGTH),
        (prop("Project", "filter"), "maxLength", limits.FILTER_MAX_LENGTH),
        (prop("Project", "entities"), "maxItems", limits.PROJECT_ENTITIES_MAX),
        (prop("Recurrence", "interval"), "maximum", limits.INTERVAL_MAX),
        (prop("Recurrence", "count"), "maximum", limits.RECURRENCE_COUNT_MAX),
        (prop("Recurrence", "start"), "pattern", limits.DATETIME_PATTERN),
        (prop("Recurrence", "end"), "pattern", limits.DATETIME_PATTERN),
        (prop("Monitoring", "interval"), "maximum", limits.INTERVAL_MAX),
        (prop("Monitoring", "backlogThreshold"), "maximum", limits.BACKLOG_THRESHOLD_MAX),
        (prop("PolicyEntry", "applicationId"), "maxLength", limits.GUID_MAX_LENGTH),
        (prop("Job", "name"), "maxLength", limits.JOB_NAME_MAX_LENGTH),
        (prop("Job", "description"), "maxLength", limits.DESCRIPTION_MAX_LENGTH),
        (prop("Job", "project"), "maxLength", limits.NAME_MAX_LENGTH),
        (prop("Job", "redeliveryMinutes"), "minimum", limits.REDELIVERY_MINUTES_MIN),
        (prop("Job", "redeliveryMinutes"), "maximum", limits.REDELIVERY_MINUTES_MAX),
        (prop("Job", "authorizationPolicy"), "maxItems", limits.POLICY_ENTRIES_MAX),
    ]
    wrong = [
        (schema, key, schema.get(key), value) for schema, key, value in expected if schema.get(key) != value
    ]
    assert not wrong
    company = prop("Job", "company")["pattern"]
    assert company == "^(" + limits.COMPANY_PATTERN.strip("^$") + ")?$"  # the app also takes "" as none


def test_the_spec_lists_exactly_the_accepted_encodings(schemas):
    assert set(schemas["Format"]["properties"]["encoding"]["enum"]) == text_encodings()


def test_the_spec_refuses_unknown_properties_as_the_app_does(schemas):
    for name in ("Field", "Entity", "Format", "MappingRule", "ProjectEntity", "Project", "Recurrence",
                 "Monitoring", "PolicyEntry", "Job"):  # fmt: skip
        assert schemas[name].get("additionalProperties") is False, name


def test_filter_limit_matches_the_filter_parser():
    from shared.formats.filters import MAX_FILTER_LENGTH

    assert limits.FILTER_MAX_LENGTH == MAX_FILTER_LENGTH
