"""Which job and project options apply to which operation, mode and format (shared/domain/config.py)."""

from __future__ import annotations

import pytest

from shared.domain.config import (
    job_option_problems,
    package_mode_problems,
    parse_job,
    parse_project,
    project_option_problems,
)

JOB_ID = "6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
KINDS = {"CSV": "csv", "XML-ELEMENT": "xml-element", "EXCEL": "excel"}


def kind(name: str) -> str | None:
    return KINDS.get(name.upper())


def job(**options):
    return parse_job(JOB_ID, {"name": "j", "project": "P", **options})


def names(problems) -> list[str]:
    return [name for name, _ in problems]


@pytest.mark.parametrize(
    "option",
    [
        {"processOnArrival": True},
        {"processInOrder": True},
        {"monitoring": {"unit": "minutes", "interval": 5}},
        {"mode": "file"},
    ],
)
def test_import_only_options_are_problems_on_an_export_job(option):
    [(name, why)] = job_option_problems(job(**option), "export", stated=set(option))
    assert name == next(iter(option)) and why
    assert job_option_problems(job(**option), "import", stated=set(option)) == []


@pytest.mark.parametrize(
    "option",
    [{"preventUploadWhenZeroRecords": True}, {"incremental": True}, {"redeliveryMinutes": 45}],
)
def test_export_only_options_are_problems_on_an_import_job(option):
    assert names(job_option_problems(job(**option), "import", stated=set(option))) == [next(iter(option))]
    assert job_option_problems(job(**option), "export", stated=set(option)) == []


def test_defaults_and_off_values_are_never_problems():
    off = job(
        processOnArrival=False,
        processInOrder=False,
        monitoring=None,
        preventUploadWhenZeroRecords=False,
        incremental=False,
        redeliveryMinutes=30,
    )
    assert job_option_problems(off, "import") == []
    # mode counts only when the body states it: stored export jobs hold the old default `file`.
    assert job_option_problems(off, "export", stated=set()) == []
    assert names(job_option_problems(off, "export", stated={"mode"})) == ["mode"]


def project(operation: str, **entity):
    return parse_project("P", {"operation": operation, "entities": [{"entity": "E", **entity}]})


def test_project_options_by_operation_and_format():
    assert names(project_option_problems(project("export", transforms=["T"]), kind)) == [
        "entities[0].transforms"
    ]
    assert project_option_problems(project("import", transforms=["T"]), kind) == []
    assert names(project_option_problems(project("import", format="CSV", sheet="S"), kind)) == [
        "entities[0].sheet"
    ]
    assert project_option_problems(project("export", format="EXCEL", sheet="S"), kind) == []
    rule = {"source": "A", "target": "B", "default": "x"}
    assert names(project_option_problems(project("export", mapping=[rule]), kind)) == [
        "entities[0].mapping[0].default"
    ]
    assert project_option_problems(project("import", mapping=[rule]), kind) == []
    no_guard = parse_project(
        "P", {"operation": "import", "neutralizeFormulas": False, "entities": [{"entity": "E"}]}
    )
    assert names(project_option_problems(no_guard, kind)) == ["neutralizeFormulas"]


def test_package_mode_ignores_transforms_on_non_xml_formats():
    assert names(package_mode_problems(project("import", format="CSV", transforms=["T"]), kind)) == [
        "entities[0].transforms"
    ]
    assert package_mode_problems(project("import", format="XML-Element", transforms=["T"]), kind) == []


def test_a_get_reply_sent_back_is_accepted():
    assert parse_job(JOB_ID, {"name": "j", "project": "P", "warnings": ["x"]}).name == "j"
    assert (
        parse_project("P", {"operation": "import", "entities": [{"entity": "E"}], "warnings": []}).name == "P"
    )


@pytest.mark.parametrize(
    ("kind", "setting", "field"),
    [
        ("xml-element", {"delimiter": ";"}, "delimiter"),
        ("json", {"textQualifier": "'"}, "textQualifier"),
        ("excel", {"headerRow": False}, "headerRow"),
        ("excel", {"encoding": "utf-8"}, "encoding"),
    ],
)
def test_format_settings_of_another_kind(kind, setting, field):
    from shared.domain.config import format_option_problems, parse_format

    assert names(format_option_problems(parse_format("F", {"kind": kind, **setting}))) == [field]
    assert format_option_problems(parse_format("F", {"kind": "csv", **setting})) == []
    assert format_option_problems(parse_format("F", {"kind": kind})) == []
