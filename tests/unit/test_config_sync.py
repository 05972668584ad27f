"""tools/config_sync.py without a deployment: reading a folder, the canonical form, and the plan's order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tools import config_sync
from tools.config_sync import Resource, SyncError, make_plan, read_folder, render
from tools.demo import CONFIG_DIR, IMPORT_JOB_ID


def _write(folder: Path, rel: str, body) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if isinstance(body, str) else json.dumps(body))


def test_the_demo_folder_reads_in_canonical_form(tmp_path):
    loaded = read_folder(CONFIG_DIR)
    assert sorted(loaded) == [
        ("applications", "d3e00000-0000-4000-8000-00000000de01"),
        ("entities", "customergroups"),
        ("jobs", IMPORT_JOB_ID),
        ("jobs", "7a1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e"),
        ("legalEntities", "dat"),
        ("legalEntities", "demf"),
        ("legalEntities", "usmf"),
        ("projects", "customergroupsexport"),
        ("projects", "customergroupsimport"),
    ]
    job = loaded[("jobs", IMPORT_JOB_ID)]
    assert job.path == f"jobs/{IMPORT_JOB_ID}.json" and job.invalid is None
    # Defaults the file leaves out are spelt out; the name stays in the file's name.
    assert job.document["redeliveryMinutes"] == 30 and "activityId" not in job.document
    assert job.content == render(job.document) and job.content.endswith(b"}\n")
    # Canonical twice is canonical once: a file written by export reads back unchanged.
    copy = tmp_path / "copy"
    for res in loaded.values():
        _write(copy, res.file_name, res.content.decode())
    again = read_folder(copy)
    assert {k: r.content for k, r in again.items()} == {k: r.content for k, r in loaded.items()}


def test_a_project_naming_an_entity_by_label_is_stored_by_name(tmp_path):
    shutil.copytree(CONFIG_DIR, tmp_path / "c")
    _write(
        tmp_path / "c",
        "projects/ByLabel.json",
        {"operation": "import", "entities": [{"entity": "customer GROUPS"}]},
    )
    project = read_folder(tmp_path / "c")[("projects", "bylabel")]
    assert project.document["entities"][0]["entity"] == "CustomerGroups"


@pytest.mark.parametrize(
    ("rel", "body", "message"),
    [
        ("jobs/not-a-guid.json", {}, "jobs/not-a-guid.json: a job's file is named after its activity ID"),
        (
            "entities/1bad.json",
            {},
            "entities/1bad.json: the file name is the resource's name: entity name '1bad'",
        ),
        ("entities/X.json", "{ nope", "entities/X.json: not valid JSON"),
        ("entities/X.json", "[]", "entities/X.json: must hold a JSON object"),
    ],
)
def test_unreadable_files_are_named(tmp_path, rel, body, message):
    _write(tmp_path, rel, body)
    with pytest.raises(SyncError) as caught:
        read_folder(tmp_path)
    assert str(caught.value).startswith(message)


def test_two_files_of_one_resource_are_refused(tmp_path):
    entity = {"keys": ["ID"], "fields": [{"name": "ID"}]}
    _write(tmp_path, "entities/Vendors.json", entity)
    _write(tmp_path, "entities/vendors.json", entity)
    with pytest.raises(SyncError, match="are the same resource"):
        read_folder(tmp_path)


def test_invalid_documents_and_builtin_formats_are_marked_not_raised(tmp_path):
    _write(tmp_path, "entities/Bad.json", {"keys": ["ID"], "fields": [{"name": "ID", "type": "money"}]})
    _write(tmp_path, "formats/CSV.json", {"kind": "csv"})
    warnings: list[str] = []
    _write(tmp_path, "entities/notes.txt", "x")
    loaded = read_folder(tmp_path, warn=warnings.append)
    assert "'money' is not a field type" in loaded[("entities", "bad")].invalid
    assert "built in" in loaded[("formats", "csv")].invalid
    assert warnings == ["entities/notes.txt is not a .json file; ignored"]
    plan = make_plan(loaded, {})
    assert [r.path for r in plan.invalid] == ["entities/Bad.json", "formats/CSV.json"]
    with pytest.raises(SyncError, match="nothing was applied"):
        config_sync.apply_plan(None, plan)  # type: ignore[arg-type]  # refused before any call


def _res(kind: str, name: str, doc: dict | None = None) -> Resource:
    doc = doc or {"v": name}
    return Resource(kind, name, render(doc), document=doc, etag='W/"1"')


def test_plan_orders_upserts_by_dependency_and_deletes_in_reverse():
    desired = {r.key: r for r in (_res("jobs", "j1"), _res("projects", "p1"), _res("entities", "e1"))}
    current = {
        r.key: r
        for r in (
            _res("entities", "e1", {"v": "old"}),
            _res("entities", "e2"),
            _res("transforms", "t9"),
            _res("jobs", "j9"),
        )
    }
    kept = make_plan(desired, current)
    assert [(c.action, c.resource.label) for c in kept.changes] == [
        ("update", "entities/e1"),
        ("create", "projects/p1"),
        ("create", "jobs/j1"),
    ]
    assert [r.label for r in kept.kept] == ["jobs/j9", "transforms/t9", "entities/e2"]
    pruned = make_plan(desired, current, prune=True)
    assert [(c.action, c.resource.label) for c in pruned.changes][3:] == [
        ("delete", "jobs/j9"),
        ("delete", "transforms/t9"),
        ("delete", "entities/e2"),
    ]
    assert '-  "v": "old"' in kept.changes[0].diff and '+  "v": "e1"' in kept.changes[0].diff


class _Pages:
    """A transport that answers a listing in pages linked by nextLink (the app answers one page today)."""

    base_url = "http://deployment"

    def __init__(self, pages: dict[str, dict]) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def request(self, method, url, **kw):
        self.asked.append(url)
        page = self.pages[url]

        class Reply:
            @staticmethod
            def json():
                return page

        return Reply()


def test_listings_follow_next_link_and_leave_builtin_formats_out():
    transport = _Pages(
        {
            "/api/manage/formats": {"value": [{"name": "CSV"}, {"name": "Tabs"}], "nextLink": "http://d/p2"},
            "http://d/p2": {"value": [{"name": "Pipes"}, {"name": "JSON"}], "nextLink": None},
        }
    )
    assert config_sync.Deployment(transport).names("formats") == ["Pipes", "Tabs"]
    assert transport.asked == ["/api/manage/formats", "http://d/p2"]

    looping = _Pages({"/api/manage/jobs": {"value": [], "nextLink": "/api/manage/jobs"}})
    with pytest.raises(SyncError, match="repeats"):
        config_sync.Deployment(looping).names("jobs")
