"""Enqueue (PROTOCOL §2): authorize the caller on the job, store the file durably, record the message.

Nothing else happens in the request: processing is the workers' job.
"""

from __future__ import annotations

import hashlib
import uuid

from shared import settings
from shared.auth.principal import Principal
from shared.domain import statuses
from shared.domain.config import Job, check_company
from shared.errors import AppError, ForbiddenError, TooLargeError, ValidationError
from shared.services import app_access, execution_access
from shared.services.config_service import ConfigService
from shared.services.dispatch import Dispatcher
from shared.storage.message_repo import MessageRepository, now_utc

# A file up to this size is uploaded at the same time as its message's index rows (one put, milliseconds); a
# larger one before them (shared/storage/together.py).
UPLOAD_ALONGSIDE_BYTES = 4 * 1024 * 1024
UPLOAD_PATH_HINT = (
    "POST /data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetAzureWriteUrl, "
    "PUT the file to the returned BlobUrl, then call ImportFromPackage"
)


class UnknownActivityError(AppError):
    # D365 answers 500 here, and RIS's connection check relies on it (PROTOCOL §1).
    status = 500
    code = "UnknownActivity"


def inbound_blob_name(job_id: str, message_id: str) -> str:
    return f"{job_id}/{message_id}"


class EnqueueService:
    def __init__(
        self, config: ConfigService, messages: MessageRepository, inbound, dispatcher: Dispatcher
    ) -> None:
        self._config = config
        self._messages = messages
        self._inbound = inbound
        self._dispatcher = dispatcher

    def _ended_failed(self, message_id: str) -> bool:
        # Not found: a concurrent enqueue of the same file is creating it; that one stays the original.
        found = self._messages.find_by_id(message_id)
        return found is not None and found.get("Status") in statuses.IMPORT_FAILED

    def get_job_for_caller(self, activity_id: str, principal: Principal) -> Job:
        job = self._config.find_job(activity_id)
        if job is None:
            raise UnknownActivityError(f"no recurring job has the activity ID {activity_id}")
        if not job.allows(principal.app_id):
            raise ForbiddenError(
                f"application {principal.app_id} is not mapped to the job {job.name!r}: add it, enabled, "
                "to the job's authorization policy",
                code="ApplicationNotAuthorized",
            )
        return job

    def get_export_job_for_caller(self, activity_id: str, principal: Principal) -> Job:
        """The job of dequeue, download and ack: authorized as get_job_for_caller, then 400 NotAnExportJob
        for an import job, as enqueue answers NotAnImportJob for an export job."""
        job = self.get_job_for_caller(activity_id, principal)
        self._require_operation(job, "export")
        return job

    def _require_operation(self, job: Job, operation: str):
        """The job's project, when it has `operation`. Otherwise 400, never an empty answer: a dequeue of an
        import job used to answer 204 ("nothing ready"), which tells a client nothing is wrong. PROTOCOL.md
        does not record what D365 answers here; §1's rule is a clear error, and enqueue already answered
        400 NotAnImportJob, so both directions answer alike (RIS logs a non-2xx reply and stops that run)."""
        project = self._config.project_of(job)
        if project.operation == operation:
            return project
        if operation == "import":
            raise ValidationError(
                f"the job {job.name!r} is an export job; dequeue from it instead", code="NotAnImportJob"
            )
        raise ValidationError(
            f"the job {job.name!r} is an import job; it has no export files to dequeue, download or ack "
            "(enqueue to it instead)",
            code="NotAnExportJob",
        )

    def resolve_company(
        self, job: Job, principal: Principal, requested: str | None, what: str = "company"
    ) -> str | None:
        """The legal entity an enqueue writes to (Job.resolve_company), which must be a configured legal
        entity the caller may use: 400 UnknownLegalEntity otherwise, naming only those it may use, so a
        partner that sends its folder name (`Input`) gets a clear refusal instead of a phantom company.
        The caller may use the job's company; on a job without one, any legal entity (only those of its
        registration when it has an enabled one). A legal entity it may use that is not the job's is 403
        LegalEntityNotAllowed (Job.resolve_company)."""
        wanted = (requested or "").strip()
        if wanted:
            check_company(wanted, what)
            visible = app_access.allowed_legal_entities(principal)
            if job.legal_entity:
                visible = None if visible is None else visible | {job.legal_entity}
            else:
                reg = app_access.registration(principal)
                visible = reg.legal_entities if reg is not None and reg.enabled else None
            self._config.check_legal_entity(wanted, what, visible=visible)
        return job.resolve_company(requested, what)

    def enqueue(
        self,
        activity_id: str,
        principal: Principal,
        body: bytes,
        *,
        entity: str | None,
        company: str | None,
        external_id: str | None,
    ) -> str:
        job = self.get_job_for_caller(activity_id, principal)
        if not job.enabled:
            raise ValidationError(
                f"the job {job.name!r} is disabled; enable it to accept files", code="JobDisabled"
            )
        project = self._require_operation(job, "import")
        entity_name = None
        if job.mode == "file":
            if not entity:
                names = ", ".join(e.entity for e in project.entities)
                raise ValidationError(
                    f"the entity query parameter is required for this job; use one of: {names}",
                    code="EntityRequired",
                )
            found = self._config.find_project_entity(project, entity)
            if found is None:
                names = ", ".join(e.entity for e in project.entities)
                raise ValidationError(
                    f"entity {entity!r} is not in the job's project; use one of: {names}",
                    code="UnknownEntity",
                )
            entity_name = found.name
        company = self.resolve_company(job, principal, company)
        limit = settings.max_enqueue_bytes()
        if len(body) > limit:
            raise TooLargeError(
                f"the file has {len(body)} bytes; the limit for enqueue is {limit} bytes. "
                f"Send larger files through the package API: {UPLOAD_PATH_HINT}",
            )
        if not body:
            raise ValidationError("the request body is empty; send the file's bytes", code="EmptyBody")

        message_id = str(uuid.uuid4())
        content_hash = hashlib.sha256(body).hexdigest()
        dedup_key = None
        if external_id:
            dedup_key = hashlib.sha256(f"{external_id}\n{content_hash}".encode()).hexdigest()
            # A retry of accepted, live or succeeded work answers the original ID; a re-send after the original
            # ended in a failed status (PreProcessingError, PostProcessingFailed, canceled) is new work.
            earlier = self._messages.claim_dedup(
                job.activity_id,
                dedup_key,
                message_id,
                settings.enqueue_dedup_minutes() * 60,
                replaceable=self._ended_failed,
            )
            if earlier and self._messages.find_by_id(earlier) is not None:
                return earlier
        # A process-on-arrival message that is not in order is created already marked dispatched and queued
        # without reading it back: enqueue costs the floor (the file and the two index rows at once, then the
        # row, then the queue item).
        dispatch_now = job.process_on_arrival and not job.process_in_order
        try:
            blob = inbound_blob_name(job.activity_id, message_id)

            def upload() -> None:
                self._inbound.upload_blob(blob, body, overwrite=True, max_concurrency=4)

            # The row key (the enqueue order) is taken when the index rows are written. A small file is stored at
            # the same time; a large one first, so that its place in the order is where its upload ended, as before.
            alongside = len(body) <= UPLOAD_ALONGSIDE_BYTES
            if not alongside:
                upload()
            message = self._messages.create_message(
                job.activity_id,
                message_id,
                {
                    "Status": statuses.ENQUEUED,
                    "Direction": "import",
                    "ExternalIdentifier": external_id,
                    "Entity": entity_name,
                    "Company": company,
                    "BlobName": blob,
                    "Size": len(body),
                    "ContentSha256": content_hash,
                    "Mode": job.mode,
                    execution_access.REQUESTED_BY: execution_access.requested_by(principal),
                    **({"DispatchedAt": now_utc()} if dispatch_now else {}),
                },
                # The file is stored before the row that names it.
                before=upload if alongside else None,
            )
        except Exception:
            if dedup_key:
                self._messages.release_dedup(job.activity_id, dedup_key, message_id)
            raise
        if job.process_on_arrival:
            try:
                if dispatch_now:
                    self._dispatcher.dispatch_created(job, message, statuses.TRIGGER_ON_ARRIVAL)
                else:
                    self._dispatcher.dispatch_message(job, message, statuses.TRIGGER_ON_ARRIVAL)
            except Exception:  # the file is stored; the scheduler will dispatch it
                import logging

                logging.getLogger(__name__).exception("on-arrival dispatch failed for %s", message_id)
        return message_id
