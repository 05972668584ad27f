"""Package import through the services against Azurite (no host), plus the fail-on-error rules alone."""

from __future__ import annotations

import uuid

import pytest

from shared.domain import statuses
from shared.formats.package_manifest import EntityTransform, ManifestEntity
from shared.services import work_items
from shared.services.import_pipeline import EntityOutcome
from shared.services.import_plan import FailRules, ImportPlan
from shared.services.package_import import PackageEntityInput
from tests.support.packages import build_package

RESHAPE = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/Rows"><Document><xsl:for-each select="Row">
    <E><K><xsl:value-of select="@k"/></K><V><xsl:value-of select="@v"/></V></E></xsl:for-each></Document>
  </xsl:template></xsl:stylesheet>"""


@pytest.fixture
def package_job(make_import_job):
    return make_import_job("Pi", mode="package")


def import_package(services, job, principal, data: bytes) -> dict:
    """Enqueue (no dispatch: nothing else picks it up) and run the worker on it in this process."""
    message_id = services.enqueue_service().enqueue(
        job.activity_id, principal, data, entity=None, company=None, external_id=None
    )
    message = services.message_repo().get_by_id(message_id)
    assert message["Mode"] == "package" and message.get("Entity") is None
    item = {
        "kind": work_items.KIND_MESSAGE,
        "jobId": job.activity_id,
        "messageId": message_id,
        "rowKey": message["RowKey"],
    }
    services.import_worker().handle(item, claim_token=str(uuid.uuid4()))
    return services.message_repo().get_by_id(message_id)


def test_disabled_entities_are_listed_but_not_read(services, package_job):
    job, principal, entity = package_job
    entities = [
        ManifestEntity(entity_name=entity, input_file_path="a.csv", source_format="CSV"),
        ManifestEntity(entity_name=entity, input_file_path="b.csv", source_format="CSV", disable=True),
    ]
    msg = import_package(services, job, principal, build_package(entities, {"a.csv": b"K,V\n1,1\n"}))
    assert msg["Status"] == statuses.PROCESSED, msg.get("ErrorSummary")
    assert msg["Counts"] == {
        entity: {"read": 1, "written": 1, "rejected": 0, "status": "Processed"},
        f"{entity} #2": {"read": 0, "written": 0, "rejected": 0, "status": "Disabled"},
    }


def test_xslt_named_in_the_manifest_resolves_to_a_stored_transform(services, package_job):
    job, principal, entity = package_job
    name = f"Reshape{uuid.uuid4().hex[:6]}"
    services.config_service().upsert_transform(name, RESHAPE)
    me = ManifestEntity(
        entity_name=entity,
        input_file_path="rows.xml",
        source_format="XML-Element",  # the transform's output, not the partner's attribute shape
        transforms=[EntityTransform(1, f"{name}.xslt", None)],
    )
    data = b'<Rows><Row k="x1" v="5"/><Row k="x2" v="6"/></Rows>'
    msg = import_package(services, job, principal, build_package([me], {"rows.xml": data}))
    assert msg["Status"] == statuses.PROCESSED, msg.get("ErrorSummary")
    assert msg["Counts"][entity]["written"] == 2

    me.transforms = [EntityTransform(1, "nowhere.xslt", None)]
    msg = import_package(services, job, principal, build_package([me], {"rows.xml": data}))
    assert msg["Status"] == statuses.PREPROCESSING_ERROR
    assert "the XSLT 'nowhere.xslt' is neither in the package nor a stored transform" in msg["ErrorSummary"]


def test_transforms_are_compiled_once_and_cached():
    from shared.formats.xslt import compile_transform

    assert compile_transform(RESHAPE) is compile_transform(RESHAPE)
    assert compile_transform(RESHAPE) is not compile_transform(RESHAPE.replace(b"Row", b"Line"))


# The rules alone ---------------------------------------------------------------------------------
def _inp(key: str, unit: int = 1, level: int = 1, *, fail_level=False, fail_unit=False, error=None):
    return PackageEntityInput(
        entity=None,  # type: ignore[arg-type]
        fmt=None,  # type: ignore[arg-type]
        open_stream=None,  # type: ignore[arg-type]
        key=key,
        error=error,
        execution_unit=unit,
        level=level,
        fail_level_on_error=fail_level,
        fail_unit_on_error=fail_unit,
    )


class _Spool:
    closed = False

    def close(self) -> None:
        self.closed = True


def _run(inputs, rejected_when_staged=None, rejected_when_written=None) -> dict[str, EntityOutcome]:
    rejected_when_staged = rejected_when_staged or {}
    rejected_when_written = rejected_when_written or {}

    def stage(inp):
        return EntityOutcome(
            entity="ignored", read=2, rejected=rejected_when_staged.get(inp.key, 0)
        ), _Spool()

    def write(index, staged):
        staged.spool.close()
        outcome = staged.outcome
        outcome.rejected += rejected_when_written.get(staged.key, 0)
        outcome.written = outcome.read - outcome.rejected

    run = ImportPlan.stage(inputs, stage, package=True)
    run.write(write)
    run.close()
    assert all(s.spool is None for s in run.entities)
    # A plan rebuilt from these outcomes (a resumed attempt) derives the same failures.
    resumed = ImportPlan(run.entities, package=True)
    for index, staged in enumerate(run.entities):
        assert resumed.rules.blocked(index, staged) == run.rules.blocked(index, staged)
    return {o.entity: o for o in run.outcomes()}


def test_a_failure_blocks_only_the_rest_of_its_strict_level():
    out = _run(
        [
            _inp("a", fail_level=True),
            _inp("b", error="boom"),  # the level is strict because one of its entities says so
            _inp("c"),
            _inp("d", level=2),
        ]
    )
    assert [out[k].status for k in "abcd"] == ["Processed", "Error", "NotRun", "Processed"]
    assert "'b' failed" in out["c"].error


def test_rejected_records_fail_an_entity_only_in_a_strict_unit():
    inputs = [_inp("a", fail_unit=True), _inp("b", level=2), _inp("c", unit=2), _inp("d", unit=2)]
    out = _run(inputs, rejected_when_staged={"a": 1, "c": 1})
    assert [out[k].status for k in "abcd"] == [
        "ProcessedWithErrors",
        "NotRun",
        "ProcessedWithErrors",
        "Processed",
    ]


def test_records_refused_while_writing_also_count():
    out = _run([_inp("a", fail_level=True), _inp("b")], rejected_when_written={"a": 1})
    assert [out[k].status for k in "ab"] == ["ProcessedWithErrors", "NotRun"]


def test_rules_without_flags_block_nothing():
    rules = FailRules([_inp("a"), _inp("b")])
    rules.failed(0, _inp("a"))
    assert rules.blocked(1, _inp("b")) is None
    assert not rules.strict(_inp("a"))


def test_a_package_overwritten_after_import_from_package_is_not_imported(services, package_job, monkeypatch):
    """The upload URL stays writable for its hour; the import reads the version it accepted, or nothing."""
    import json

    import requests

    job, principal, entity = package_job
    api = services.package_api_service()
    # Nothing else may pick the work item up: this test runs the worker itself, after the overwrite.
    monkeypatch.setattr(api, "_dispatch", lambda *args: None)
    entities = [ManifestEntity(entity_name=entity, input_file_path="a.csv", source_format="CSV")]
    accepted = build_package(entities, {"a.csv": b"K,V\nkept,1\n"})
    swapped = build_package(entities, {"a.csv": b"K,V\nswapped,2\n"})

    def put(url: str, data: bytes) -> None:
        resp = requests.put(url, data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=30)
        assert resp.status_code == 201, resp.text

    def accept(url: str) -> dict:
        from shared.services.package_api_service import package_message_id

        exec_id = api.import_from_package(principal, package_url=url, definition_group_id=job.project)
        message = services.message_repo().get_by_id(package_message_id(exec_id))
        assert message["BlobETag"]
        return {
            "kind": work_items.KIND_MESSAGE,
            "jobId": job.activity_id,
            "messageId": message["MessageId"],
            "rowKey": message["RowKey"],
            "runId": exec_id,
        }

    first = json.loads(api.write_url(principal, "first.zip"))["BlobUrl"]
    put(first, accepted)
    item = accept(first)
    put(first, swapped)  # after ImportFromPackage accepted the first version
    services.import_worker().handle(item, claim_token=str(uuid.uuid4()))
    message = services.message_repo().get_by_id(item["messageId"])
    assert message["Status"] == statuses.PREPROCESSING_ERROR
    assert "overwritten after it was accepted" in message["ErrorSummary"]

    # The control: not overwritten, it imports.
    second = json.loads(api.write_url(principal, "second.zip"))["BlobUrl"]
    put(second, accepted)
    item = accept(second)
    services.import_worker().handle(item, claim_token=str(uuid.uuid4()))
    message = services.message_repo().get_by_id(item["messageId"])
    assert message["Status"] == statuses.PROCESSED, message.get("ErrorSummary")
