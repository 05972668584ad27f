"""Issue 12 audit: every configuration value a GET returns is the value the PUT sent.

The parsed objects may hold a derived form for the code (a canonical codec, a UTC datetime, a lower-case
legal entity, key names in the fields' spelling); the JSON written back keeps the user's text.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain import config
from shared.domain.config import parse_entity, parse_format, parse_job, parse_project

GUID = "6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"


def _body(doc: dict, drop: str) -> dict:
    return {k: v for k, v in doc.items() if k != drop}


def test_job_company_and_recurrence_dates_as_written() -> None:
    body = {
        "name": "J",
        "project": "P",
        "company": "USMF",
        "recurrence": {
            "unit": "hours",
            "interval": 2,
            "start": "2030-06-01T12:00:00+02:00",
            "end": "2030-07-01",
        },
    }
    job = parse_job(GUID, body)
    assert job.legal_entity == "usmf" and job.recurrence.start == datetime(2030, 6, 1, 10, tzinfo=UTC)
    doc = config.job_to_json(job)
    assert doc["company"] == "USMF"
    assert (doc["recurrence"]["start"], doc["recurrence"]["end"]) == (
        "2030-06-01T12:00:00+02:00",
        "2030-07-01",
    )
    assert parse_job(GUID, doc) == job
    assert job.resolve_company(None) == "usmf" and job.resolve_company("UsMf") == "usmf"


def test_entity_keys_and_required_as_written() -> None:
    body = {
        "keys": ["customergroupid"],
        "fields": [
            {"name": "CUSTOMERGROUPID", "type": "string", "required": False},
            {"name": "NAME", "type": "string"},
        ],
    }
    entity = parse_entity("E", body)
    assert entity.keys == ("CUSTOMERGROUPID",) and entity.fields[0].required is True  # what the code uses
    doc = config.entity_to_json(entity)
    assert doc["keys"] == ["customergroupid"]
    assert [f["required"] for f in doc["fields"]] == [False, False]
    assert parse_entity("E", _body(doc, "name")) == entity


def test_format_and_project_round_trip_unchanged() -> None:
    fmt = parse_format("F", {"delimiter": "\\t", "encoding": "UTF8", "dateFormat": "%d/%m/%Y"})
    assert {k: config.format_to_json(fmt)[k] for k in ("delimiter", "encoding", "dateFormat")} == {
        "delimiter": "\\t",
        "encoding": "UTF8",
        "dateFormat": "%d/%m/%Y",
    }
    project = parse_project(
        "P",
        {"operation": "import", "entities": [{"entity": "E", "mapping": [{"target": "A", "default": 1}]}]},
    )
    assert config.project_to_json(project)["entities"][0]["mapping"][0]["source"] is None


def test_an_empty_export_filter_stays_empty() -> None:
    project = parse_project("P", {"operation": "export", "filter": "", "entities": [{"entity": "E"}]})
    assert config.project_to_json(project)["filter"] == ""
    assert parse_project("P", {"operation": "export", "entities": [{"entity": "E"}]}).filter is None
