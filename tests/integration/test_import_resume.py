"""Resumable imports (issue 11, item 2), against a real Azurite: an attempt that fails after a checkpoint is
resumed by the next delivery from that checkpoint (no preprocessing again, only the rows after it written,
counts and the error file exact), a configuration change stages the file again, a data package resumes after
its finished entities, and the staged files are removed when the message ends.

Failures are the app's fault points (shared/services/fault_points.py) raising after the Nth checkpoint was
saved; tests/faults/test_terminal_faults.py kills real worker processes at the same points.
"""

from __future__ import annotations

import pytest

from shared.domain import statuses
from shared.queue_limits import Delivery
from tests.support.work import enqueue_message, message_item

ROWS = 1000
EVERY = 100  # IMPORT_CHECKPOINT_ROWS here (its minimum)


@pytest.fixture
def checkpoints(monkeypatch, tmp_path):
    """Checkpoint every message from its first byte, every EVERY rows; fault plans in tmp_path."""
    monkeypatch.setenv("IMPORT_CHECKPOINT_MIN_BYTES", "0")
    monkeypatch.setenv("IMPORT_CHECKPOINT_ROWS", str(EVERY))
    monkeypatch.setenv("DEV_FAULT_PLAN_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def spies(services, monkeypatch):
    """Counts the files staged (preprocess calls) and the rows sent to the entity store."""
    from shared.services import import_pipeline

    seen = {"staged": 0, "upserted": 0}
    real_preprocess = import_pipeline.preprocess

    def preprocess(*args, **kwargs):
        seen["staged"] += 1
        return real_preprocess(*args, **kwargs)

    monkeypatch.setattr(import_pipeline, "preprocess", preprocess)
    repo = services.entity_repo()
    real_upsert = repo.start_upsert

    def start_upsert(entity, rows, **kwargs):
        seen["upserted"] += len(rows)
        return real_upsert(entity, rows, **kwargs)

    monkeypatch.setattr(repo, "start_upsert", start_upsert)
    return seen


def _csv(rows: int, bad: set[int] = frozenset()) -> bytes:
    lines = [f"k{i},{'x' if i in bad else i}\n" for i in range(rows)]
    return ("K,V\n" + "".join(lines)).encode()


def _fail_after_checkpoints(plan_dir, message: dict, saved: int) -> None:
    """The attempt raises right after its `saved`-th checkpoint was written (the staged one is the first)."""
    (plan_dir / f"checkpoint.{message['MessageId']}").write_text(f"raise 1 {saved - 1}", encoding="utf-8")


def _staging_blobs(services, job, message: dict) -> list[str]:
    from shared.storage import names
    from shared.storage.factory import get_clients

    container = get_clients().container(names.CONTAINER_STAGING)
    prefix = f"{job.activity_id}/{message['RowKey']}/"
    return [b.name for b in container.list_blobs(name_starts_with=prefix)]


def _rows(services, entity: str) -> list[dict]:
    return list(services.entity_repo().iter_rows(services.config_service().get_entity(entity)))


def test_a_failed_attempt_resumes_from_its_last_checkpoint(services, make_import_job, checkpoints, spies):
    job, principal, entity = make_import_job("Rs")
    message = enqueue_message(services, job, principal, _csv(ROWS, bad={5, 950}), entity)
    _fail_after_checkpoints(checkpoints, message, saved=4)  # staged, then 100, 200 and 300 rows
    worker = services.import_worker()
    with pytest.raises(RuntimeError, match="injected fault at checkpoint"):
        worker.handle(message_item(job, message), claim_token="q-resume", delivery=Delivery(1, 3))
    failed = services.message_repo().get_by_id(message["MessageId"])
    assert failed["Status"] == statuses.PROCESSING
    # Checkpoints count staged rows (row 5 was rejected when staged, so it is not among them).
    assert failed["Counts"][entity]["written"] == 3 * EVERY
    assert spies == {"staged": 1, "upserted": 3 * EVERY}

    worker.handle(message_item(job, message), claim_token="q-resume", delivery=Delivery(2, 3))
    final = services.message_repo().get_by_id(message["MessageId"])
    assert final["Status"] == statuses.PROCESSED_WITH_ERRORS, final.get("ErrorSummary")
    assert final["Counts"][entity] == {"read": ROWS, "written": ROWS - 2, "rejected": 2}
    assert final["Attempts"] == 2 and final["StagedAttempt"] == 1
    assert (
        "resumed from the checkpoint of attempt 1: preprocessing skipped, 300 record(s) already written"
        in (final["ResumedFrom"])
    )
    # Not staged again; only the rows after the checkpoint were written again.
    assert spies == {"staged": 1, "upserted": ROWS - 2}
    assert len(_rows(services, entity)) == ROWS - 2
    # The error file holds each rejected record once: row 5 (staged by attempt 1) and row 950.
    errors = services.errors_container().download_blob(final["ErrorFile"]).readall().decode()
    assert final["ErrorCount"] == 2 and errors.count("\n") == 3, errors
    assert '"k5"' in errors and '"k950"' in errors
    assert _staging_blobs(services, job, message) == []


def test_a_configuration_change_stages_the_file_again(services, make_import_job, checkpoints, spies):
    job, principal, entity = make_import_job("Rc")
    message = enqueue_message(services, job, principal, _csv(300), entity)
    _fail_after_checkpoints(checkpoints, message, saved=2)  # staged, then 100 rows written
    worker = services.import_worker()
    with pytest.raises(RuntimeError):
        worker.handle(message_item(job, message), claim_token="q-changed", delivery=Delivery(1, 3))
    assert _staging_blobs(services, job, message)
    # An administrator's change (any configuration write) between the attempts: the rows may differ now.
    config = services.config_service()
    config.upsert_entity(
        entity, {"keys": ["K"], "fields": [{"name": "K"}, {"name": "V", "type": "int"}], "label": "Renamed"}
    )
    worker.handle(message_item(job, message), claim_token="q-changed", delivery=Delivery(2, 3))
    final = services.message_repo().get_by_id(message["MessageId"])
    assert final["Status"] == statuses.PROCESSED
    assert final["Counts"][entity] == {"read": 300, "written": 300, "rejected": 0}
    assert final["StagedAttempt"] == 2 and "ResumedFrom" not in final
    assert spies["staged"] == 2
    assert len(_rows(services, entity)) == 300
    assert _staging_blobs(services, job, message) == []


def test_a_small_file_is_not_checkpointed(services, make_import_job, monkeypatch, spies):
    monkeypatch.setenv("IMPORT_CHECKPOINT_MIN_BYTES", str(1024 * 1024))
    job, principal, entity = make_import_job("Rn")
    message = enqueue_message(services, job, principal, _csv(50), entity)
    services.import_worker().handle(message_item(job, message), claim_token="q-small")
    final = services.message_repo().get_by_id(message["MessageId"])
    assert final["Status"] == statuses.PROCESSED and not final.get("Checkpointed")
    assert _staging_blobs(services, job, message) == []


def test_a_package_resumes_after_its_finished_entities(services, make_import_job, checkpoints, spies):
    from shared.formats.package_manifest import ManifestEntity
    from tests.support.packages import build_package

    job, principal, first = make_import_job("Rp", mode="package")
    config = services.config_service()
    second = f"{first}b"
    config.upsert_entity(second, {"keys": ["K"], "fields": [{"name": "K"}, {"name": "V", "type": "int"}]})
    entities = [
        ManifestEntity(entity_name=first, input_file_path="a.csv", source_format="CSV", sequence_in_level=1),
        ManifestEntity(entity_name=second, input_file_path="b.csv", source_format="CSV", sequence_in_level=2),
    ]
    package = build_package(entities, {"a.csv": _csv(150), "b.csv": _csv(250)})
    message = enqueue_message(services, job, principal, package, None)
    # Checkpoints: staged, first at 100 rows, first done; the attempt fails then.
    _fail_after_checkpoints(checkpoints, message, saved=3)
    worker = services.import_worker()
    with pytest.raises(RuntimeError):
        worker.handle(message_item(job, message), claim_token="q-package", delivery=Delivery(1, 3))
    assert spies == {"staged": 2, "upserted": 150}
    worker.handle(message_item(job, message), claim_token="q-package", delivery=Delivery(2, 3))
    final = services.message_repo().get_by_id(message["MessageId"])
    assert final["Status"] == statuses.PROCESSED, final.get("ErrorSummary")
    assert final["Counts"][first] == {"read": 150, "written": 150, "rejected": 0, "status": "Processed"}
    assert final["Counts"][second] == {"read": 250, "written": 250, "rejected": 0, "status": "Processed"}
    assert spies == {"staged": 2, "upserted": 400}  # the first entity was not written again
    assert final["StagedAttempt"] == 1
    assert _staging_blobs(services, job, message) == []
