"""The package REST API (PROTOCOL §6): uploads by SAS, package imports and exports, execution status.

- **GetAzureWriteUrl** hands out a create/write-only SAS for `uploads/{guid}/{file name}`, so a package
  never passes through the HTTP function.
- **ImportFromPackage** takes back one of *our* upload URLs (matched by host and container path; it is
  never fetched, so no URL can make the app call elsewhere), picks an enabled import job of the data
  project that the caller is authorized on, and records a package-mode message that reads the blob
  where it was uploaded (`BlobContainer` = uploads). Only the application that asked for the upload
  URL may import it (admins excepted), and the message pins the blob's ETag, so overwriting the
  package through the still-valid URL after the import was accepted fails that import with a
  reason instead of importing other bytes. Its message ID derives from the execution ID, so
  the execution is found (NotRun) before a worker starts its run, and a repeated call with the same
  execution ID answers that execution instead of importing twice. The work item carries the execution
  ID as the run ID (a process-in-order job drains in order instead: its run ID is the drain's).
- **ExportToPackage** starts an export run of an enabled export job of the project, with the execution
  ID as run ID and no outbound message; it always uploads a package, also of zero rows.
  **GetExportedPackageUrl** gives a read SAS once it has ended, "" before, and a clear error for an
  execution that will never have a package (never "" once it has ended: clients poll while it is "").
- Execution lookups accept any execution ID of this app: package API imports and exports, and the
  runs of recurring jobs (GetExecutionIdByMessageId's answer), with or without quotes or braces.

Authorization (PROTOCOL §8.4): to start work, admins, or an application with an enabled policy entry
on an enabled job of the data project named in the call (for GetAzureWriteUrl, any job). To read an
execution, its package or its error files: execution_access.may_see (admins, the job's partners, the
application that started it within its legal entities); any other caller gets the reply of an
unknown execution ID, so IDs reveal nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import tempfile
import urllib.parse
import uuid
from dataclasses import dataclass, field

from shared.api.http import clean_id
from shared.auth.principal import Principal
from shared.domain import statuses
from shared.domain.config import NAME_RE, Job
from shared.errors import AppError, ConflictError, ForbiddenError, NotFoundError, ValidationError
from shared.services import app_access, execution_access
from shared.storage import names, sas

log = logging.getLogger(__name__)

# A package API import's message ID = uuid5(namespace, execution ID).
_MESSAGE_NS = uuid.UUID("5d0c8f3e-2b7a-4c61-9e1f-6a4d2c8b7e30")
MAX_EXECUTION_ID = 200
MAX_FILE_NAME = 128
# Table keys cannot hold / \ # ? or control characters; an execution ID is a run's key.
_EXEC_BAD = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_EXEC_JUNK = re.compile(r"^[\s\"']+|[\s\"']+$")
_FILE_JUNK = re.compile(r"[^A-Za-z0-9._-]+")
_UPLOAD_BLOB = re.compile(
    # The file name as sanitize_file_name makes it: never "." or "..", which URLs resolve away.
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/(?!\.+$)[A-Za-z0-9._-]{1,128}$"
)
# Who asked for each upload URL: an empty blob per upload, beside it in the same container. A
# write SAS names one blob, so an uploader cannot write these; they never match _UPLOAD_BLOB.
_REQUESTER_PREFIX = "requested-by/"
_REQUESTER_KEY = "applicationid"
_DEDUP_WINDOW_SECONDS = 10 * 365 * 24 * 3600  # an execution ID is never reused for another import
_MAX_RUN_MESSAGES = 50

# Execution summary of a run without messages (exports, and import runs that handled none).
_RUN_SUMMARY = {
    statuses.RUN_WAITING: "NotRun",
    statuses.RUN_EXECUTING: "Executing",
    statuses.RUN_ENDED: "Succeeded",
    statuses.RUN_ERROR: "Failed",
    statuses.RUN_CANCELED: "Canceled",
}
UNKNOWN = "Unknown"


def package_message_id(execution_id: str) -> str:
    return str(uuid.uuid5(_MESSAGE_NS, execution_id))


def execution_id_text(value) -> str:
    """The execution ID as sent, minus transport junk: whitespace and (escaped) quotes around it."""
    text = str(value if value is not None else "").replace('\\"', '"')
    previous = None
    while previous != text:
        previous = text
        text = _EXEC_JUNK.sub("", text)
    return text


def new_execution_id(value) -> str:
    """The client's execution ID, exactly (minus quotes), when it sent one; a new GUID otherwise."""
    text = execution_id_text(value)
    if not text:
        return str(uuid.uuid4())
    if len(text) > MAX_EXECUTION_ID or _EXEC_BAD.search(text):
        raise ValidationError(
            f"executionId {text[:60]!r} is not valid: at most {MAX_EXECUTION_ID} characters, "
            "without / \\ # ? or control characters",
            code="InvalidExecutionId",
        )
    return text


def execution_id_candidates(value) -> list[str]:
    """The forms an execution ID may be stored under: as sent, unbraced, and the GUID spellings."""
    text = execution_id_text(value)
    out = [text, clean_id(text)]
    try:
        guid = uuid.UUID(clean_id(text))
    except ValueError:
        pass
    else:
        lower = str(guid)
        out += [lower, "{" + lower + "}", lower.upper(), "{" + lower.upper() + "}"]
    seen: list[str] = []
    for candidate in out:
        if (
            candidate
            and candidate not in seen
            and len(candidate) <= MAX_EXECUTION_ID
            and not _EXEC_BAD.search(candidate)
        ):
            seen.append(candidate)
    return seen


def execution_id_in_use(exec_id: str) -> ConflictError:
    """The one answer for an execution ID taken by any other execution, whoever's and whatever it is: an
    ID that clients choose must be unique, so its use shows, but nothing more (not its kind, job or state)."""
    return ConflictError(
        f"the execution ID {exec_id!r} is already in use; send a new executionId", code="ExecutionIdInUse"
    )


def sanitize_file_name(value) -> str:
    text = _FILE_JUNK.sub("_", str(value or "").strip()).strip("._")
    if not text:
        return "package.zip"
    if len(text) > MAX_FILE_NAME:
        stem, dot, ext = text.rpartition(".")
        text = (stem[: MAX_FILE_NAME - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else text
        text = text[:MAX_FILE_NAME]
    return text


def _text_param(value, what: str) -> str:
    text = execution_id_text(value)
    if not text:
        raise ValidationError(f"the body needs {what}", code="MissingParameter")
    return text


@dataclass
class Execution:
    execution_id: str
    job_id: str
    operation: str  # "import" or "export"
    run: dict | None
    messages: list[dict] = field(default_factory=list)
    starter: str | None = None  # the application that started it (execution_access.REQUESTED_BY)


class PackageApiService:
    def __init__(self, *, clients, config, messages, runs, dispatcher, export_service) -> None:
        self._clients = clients
        self._config = config
        self._messages = messages
        self._runs = runs
        self._dispatcher = dispatcher
        self._export = export_service

    # Authorization -----------------------------------------------------------------------------
    @staticmethod
    def _is_admin(principal: Principal) -> bool:
        return execution_access.is_admin(principal)

    def _enabled_jobs(self, project: str | None = None) -> list[Job]:
        jobs = [j for j in self._config.list_jobs() if j.enabled]
        if project is not None:
            jobs = [j for j in jobs if j.project.casefold() == project.casefold()]
        return jobs

    def _pick_job(
        self,
        principal: Principal,
        project_name: str,
        operation: str,
        legal_entity: str | None,
        *,
        create_group: bool = False,
    ) -> Job:
        """The job that runs a package API import or export of the project.

        A project that recurring jobs use is governed by them (PROTOCOL §8.4): the caller must be on the
        policy of one of its enabled jobs (admins need none), and that job runs it. A project no job uses (a
        definition group made over OData) runs on its group job (definition_groups), for callers app_access
        allows. `create_group` (ImportFromPackage): a group that does not exist is made from the package's
        manifest by the import, as D365 does."""
        from shared.services import app_access
        from shared.services.definition_groups import group_job

        admin = self._is_admin(principal)
        capability = app_access.IMPORT if operation == "import" else app_access.EXPORT
        denied = ForbiddenError(
            f"application {principal.app_id} is not mapped to an enabled job of the data project "
            f"{project_name!r}: add it, enabled, to the authorization policy of one of its jobs",
            code="ApplicationNotAuthorized",
        )
        if legal_entity:
            from shared.domain.config import check_company

            check_company(legal_entity.lower(), "legalEntityId")
        if not NAME_RE.match(project_name):
            if create_group:
                app_access.require(principal, capability, legal_entity)
                raise ValidationError(
                    f"definitionGroupId {project_name[:80]!r} is not a valid name: 1-64 letters, digits, '_' "
                    "or '-', starting with a letter",
                    code="InvalidDefinitionGroupId",
                )
            if not admin:
                raise denied
            raise NotFoundError(
                f"the data project (definitionGroupId) {project_name!r} does not exist", code="UnknownProject"
            )
        project = self._config.find_project(project_name, operation)
        if project is None:
            other = self._config.find_project(project_name)
            if other is not None:
                all_jobs = [
                    j for j in self._config.list_jobs() if j.project.casefold() == other.name.casefold()
                ]
                if (
                    all_jobs
                    and not admin
                    and not app_access.registered(principal)
                    and not any(j.enabled and j.allows(principal.app_id) for j in all_jobs)
                ):
                    raise denied
                if create_group and not all_jobs:
                    # D365 keys groups by name and operation: an import group beside an export group of the
                    # same name (a name jobs use stays one project's: ProjectNameUsedByJob).
                    app_access.require(principal, capability, legal_entity)
                    return group_job(operation, project_name, legal_entity)
                raise ValidationError(
                    f"the data project {other.name!r} is an {other.operation} project; "
                    f"{'ImportFromPackage' if operation == 'import' else 'ExportToPackage'} needs an "
                    f"{operation} project",
                    code="WrongProjectOperation",
                )
            if create_group:
                app_access.require(principal, capability, legal_entity)
                return group_job(operation, project_name, legal_entity)
            if not admin:
                app_access.require(principal, capability, legal_entity)
            raise NotFoundError(
                f"the data project (definitionGroupId) {project_name!r} does not exist", code="UnknownProject"
            )
        all_jobs = [j for j in self._config.list_jobs() if j.project.casefold() == project.name.casefold()]
        if not all_jobs:
            app_access.require(principal, capability, legal_entity)
            return group_job(operation, project.name, legal_entity)
        jobs = [j for j in all_jobs if j.enabled]
        # A registered application is authorized by its registration (app_access), not by job policies.
        if not admin and not app_access.registered(principal):
            jobs = [j for j in jobs if j.allows(principal.app_id)]
            if not jobs:
                raise denied
        if not jobs:
            raise ValidationError(
                f"no enabled job uses the data project {project.name!r}; create or enable one",
                code="NoJobForProject",
            )
        if operation == "import":
            if legal_entity:  # a job of that legal entity, else one of every legal entity
                wanted = legal_entity.casefold()
                jobs = [j for j in jobs if (j.company or "").casefold() == wanted] or jobs
            # Package jobs first, then jobs free to run the message at once.
            jobs.sort(
                key=lambda j: (j.mode != "package", j.process_in_order, j.name.casefold(), j.activity_id)
            )
            return jobs[0]
        jobs.sort(key=lambda j: (j.name.casefold(), j.activity_id))
        if not legal_entity:
            # A caller limited to some legal entities gets a job of one of them when the project has one.
            allowed = None if admin else app_access.allowed_legal_entities(principal)
            if allowed is not None:
                jobs = [j for j in jobs if j.legal_entity in allowed] or jobs
            return jobs[0]
        wanted = legal_entity.casefold()
        for j in jobs:
            if (j.company or "").casefold() == wanted:
                return j
        for j in jobs:
            if not j.company:
                return j
        raise ValidationError(
            f"no enabled export job of the data project {project.name!r} exports the legal entity "
            f"{legal_entity!r} (jobs export: {', '.join(sorted({j.company or '*' for j in jobs}))})",
            code="NoJobForLegalEntity",
        )

    def _require_legal_entity(
        self, principal: Principal, capability: str, job: Job, legal: str | None
    ) -> None:
        """The legal entity the work runs in must be one the caller may use (app_access). Without one, an
        export of a company-specific entity is refused (it would mix legal entities), and so is an import by
        a caller limited to some legal entities (it would not say which)."""
        if legal:
            app_access.require(principal, capability, legal, what="legalEntityId")
            return
        if capability == app_access.EXPORT:
            problem = self._export.legal_entity_problem(job, None)
            if problem:
                raise ValidationError(problem, code="LegalEntityRequired")
        elif app_access.allowed_legal_entities(principal) is not None:
            raise ValidationError(
                f"the job {job.name!r} has no company: send legalEntityId, the legal entity to import into",
                code="LegalEntityRequired",
            )

    # Uploads -------------------------------------------------------------------------------------
    def write_url(self, principal: Principal, unique_file_name) -> str:
        """The JSON text `{"BlobId":"{GUID}","BlobUrl":"<write SAS URL>"}` (GetAzureWriteUrl)."""
        app_access.require(principal, app_access.IMPORT)
        blob_id = uuid.uuid4()
        blob = f"{blob_id}/{sanitize_file_name(unique_file_name)}"
        uploads = self._clients.container(names.CONTAINER_UPLOADS)  # created on first use
        uploads.upload_blob(
            _REQUESTER_PREFIX + str(blob_id), b"", metadata={_REQUESTER_KEY: principal.app_id or ""}
        )
        url = sas.write_url(self._clients, names.CONTAINER_UPLOADS, blob)
        return json.dumps({"BlobId": "{" + str(blob_id).upper() + "}", "BlobUrl": url}, separators=(",", ":"))

    def upload_blob_name(self, package_url) -> str:
        """The blob of `uploads` that `package_url` names; ValidationError for any other URL."""
        if not isinstance(package_url, str) or not package_url.strip():
            raise ValidationError(
                "the body needs packageUrl (the BlobUrl of GetAzureWriteUrl)", code="MissingParameter"
            )
        not_ours = ValidationError(
            "packageUrl must be a BlobUrl returned by GetAzureWriteUrl (this app's upload container)",
            code="InvalidPackageUrl",
        )
        try:
            given = urllib.parse.urlsplit(package_url.strip())
            ours = urllib.parse.urlsplit(
                self._clients.blob_service.get_container_client(names.CONTAINER_UPLOADS).url
            )
            given_port = given.port or (443 if given.scheme.lower() == "https" else 80)
            our_port = ours.port or (443 if ours.scheme.lower() == "https" else 80)
        except ValueError:
            raise not_ours from None
        if (
            given.scheme.lower() not in ("http", "https")
            or given.hostname != ours.hostname
            or given_port != our_port
        ):
            raise not_ours
        prefix = urllib.parse.unquote(ours.path).rstrip("/") + "/"
        path = urllib.parse.unquote(given.path)
        if not path.startswith(prefix):
            raise not_ours
        blob = path[len(prefix) :]
        if not _UPLOAD_BLOB.match(blob):
            raise not_ours
        return blob

    def _check_requester(self, principal: Principal, blob: str) -> None:
        """Only the application that asked for an upload URL may import what was put there."""
        if self._is_admin(principal):
            return
        from azure.core.exceptions import ResourceNotFoundError

        marker = _REQUESTER_PREFIX + blob.split("/", 1)[0]
        try:
            props = (
                self._clients.container(names.CONTAINER_UPLOADS).get_blob_client(marker).get_blob_properties()
            )
            requester = (props.metadata or {}).get(_REQUESTER_KEY)
        except ResourceNotFoundError:
            requester = None
        if not requester or requester.lower() != (principal.app_id or "").lower():
            raise ForbiddenError(
                f"packageUrl was not handed out to application {principal.app_id}: "
                "import only packages uploaded to your own GetAzureWriteUrl",
                code="UploadNotYours",
            )

    # Import ------------------------------------------------------------------------------------
    def import_from_package(
        self,
        principal: Principal,
        *,
        package_url,
        definition_group_id,
        execution_id=None,
        legal_entity_id=None,
    ) -> str:
        blob = self.upload_blob_name(package_url)
        legal = execution_id_text(legal_entity_id) or None
        app_access.require(principal, app_access.IMPORT, legal, what="legalEntityId")
        job = self._pick_job(
            principal,
            _text_param(definition_group_id, "definitionGroupId"),
            "import",
            legal,
            create_group=True,
        )
        self._check_requester(principal, blob)
        company = job.resolve_company(legal, "legalEntityId")
        self._require_legal_entity(principal, app_access.IMPORT, job, company)
        exec_id = new_execution_id(execution_id)
        message_id = package_message_id(exec_id)

        existing = self._messages.find_by_id(message_id)
        if existing is not None:
            return self._same_import(existing, blob, exec_id)
        if self._runs.find_run(exec_id) is not None:
            raise execution_id_in_use(exec_id)

        from azure.core.exceptions import ResourceNotFoundError

        uploads = self._clients.container(names.CONTAINER_UPLOADS)
        try:
            props = uploads.get_blob_client(blob).get_blob_properties()
        except ResourceNotFoundError:
            raise ValidationError(
                "nothing was uploaded to packageUrl: PUT the package to the BlobUrl first "
                "(x-ms-blob-type: BlockBlob)",
                code="PackageNotUploaded",
            ) from None
        if not props.size:
            raise ValidationError("the uploaded package is empty", code="EmptyPackage")

        dedup_key = "exec-" + hashlib.sha256(exec_id.encode()).hexdigest()
        earlier = self._messages.claim_dedup(job.activity_id, dedup_key, message_id, _DEDUP_WINDOW_SECONDS)
        if earlier is not None:  # a concurrent call with the same execution ID won
            found = self._messages.find_by_id(earlier)
            if found is not None:
                return self._same_import(found, blob, exec_id)
        try:
            # Listed first, so that the scheduler finds the message whatever happens to its first dispatch.
            self._dispatcher.mark_pending(job.activity_id)
            message = self._messages.create_message(
                job.activity_id,
                message_id,
                {
                    "Status": statuses.ENQUEUED,
                    "Direction": "import",
                    "ExternalIdentifier": blob.split("/", 1)[1],
                    "Entity": None,
                    "Company": company,
                    "BlobContainer": names.CONTAINER_UPLOADS,
                    "BlobName": blob,
                    "Size": props.size,
                    # The worker reads this version only: the upload URL stays writable for its hour.
                    "BlobETag": props.etag,
                    "Mode": "package",
                    "RunId": exec_id,
                    "Trigger": statuses.TRIGGER_PACKAGE_API,
                    execution_access.REQUESTED_BY: execution_access.requested_by(principal),
                    # The definitionGroupId as sent: a group made from the manifest keeps its spelling (the
                    # group job's ID holds the name in lower case).
                    "DefinitionGroup": _text_param(definition_group_id, "definitionGroupId"),
                },
            )
        except Exception:
            self._messages.release_dedup(job.activity_id, dedup_key, message_id)
            raise
        try:
            self._dispatch(job, message, exec_id)
        except Exception:  # the message is stored; the scheduler dispatches waiting messages
            log.exception("package API dispatch failed for execution %s", exec_id)
        return exec_id

    @staticmethod
    def _same_import(existing: dict, blob: str, exec_id: str) -> str:
        if existing.get("BlobName") != blob:
            raise execution_id_in_use(exec_id)
        return exec_id

    def _dispatch(self, job: Job, message: dict, exec_id: str) -> None:
        self._dispatcher.dispatch_message(job, message, statuses.TRIGGER_PACKAGE_API, run_id=exec_id)

    # Export ------------------------------------------------------------------------------------
    def export_to_package(
        self,
        principal: Principal,
        *,
        definition_group_id,
        package_name=None,
        execution_id=None,
        legal_entity_id=None,
        re_execute=False,
        delta: bool = False,
        preview_count=None,
        entity_list=None,
    ) -> str:
        """ExportToPackage and its variants. `re_execute` with an execution ID used before runs that
        execution again (once it has ended; a running one is left to finish). `delta`: ExportToPackageDelta.
        `preview_count`: ExportToPackagePreview's record cap. `entity_list`: a comma-separated subset."""
        legal = execution_id_text(legal_entity_id) or None
        app_access.require(principal, app_access.EXPORT, legal, what="legalEntityId")
        job = self._pick_job(
            principal, _text_param(definition_group_id, "definitionGroupId"), "export", legal
        )
        legal = (legal or job.company or "").lower() or None
        self._require_legal_entity(principal, app_access.EXPORT, job, legal)
        entities = [e.strip() for e in str(entity_list or "").split(",") if e.strip()] or None
        limit = None
        if preview_count not in (None, ""):
            try:
                limit = int(preview_count)
            except (TypeError, ValueError):
                limit = -1
            if isinstance(preview_count, bool) or limit < 0:
                raise ValidationError(
                    "exportPreviewCount must be a whole number of at least 0", code="InvalidPreviewCount"
                )
        exec_id = new_execution_id(execution_id)
        existing = self._runs.find_run(exec_id)
        if existing is not None:
            if existing.get("Operation") != "export" or existing.get("PartitionKey") != job.activity_id:
                raise execution_id_in_use(exec_id)
            if not _truthy(re_execute) or existing.get("Status") not in _ENDED_RUN:
                return exec_id  # a retried call: the same execution
        elif self._messages.find_by_id(package_message_id(exec_id)) is not None:
            raise execution_id_in_use(exec_id)
        self._export.start(
            job,
            statuses.TRIGGER_PACKAGE_API,
            run_id=exec_id,
            offer=False,
            legal_entity=legal,
            incremental=delta,
            preview_count=limit,
            entities=entities,
        )
        # Recorded just after the run exists; until then the job's partners (the caller is one) see it.
        fields = {execution_access.REQUESTED_BY: execution_access.requested_by(principal)}
        name = execution_id_text(package_name)
        if name:
            fields["PackageName"] = sanitize_file_name(name)
        self._runs.update_run(exec_id, **fields)
        return exec_id

    # Executions --------------------------------------------------------------------------------
    def visible_execution(self, principal: Principal, execution_id) -> Execution | None:
        """The first execution stored under a spelling of `execution_id` that the caller may see
        (execution_access.may_see), or None. One the caller may not see is treated as absent, so the
        reply reveals nothing; its messages are never read."""
        for candidate in execution_id_candidates(execution_id):
            run = self._runs.find_run(candidate)
            message = self._messages.find_by_id(package_message_id(candidate))
            if run is None and message is None:
                continue
            job_id = (run or message)["PartitionKey"]
            starter = (run or {}).get(execution_access.REQUESTED_BY) or (message or {}).get(
                execution_access.REQUESTED_BY
            )
            legal = (run or {}).get("Company") or (message or {}).get("Company")
            if not execution_access.may_see(
                principal, job_id=job_id, starter=starter, config=self._config, legal_entity=legal
            ):
                continue
            if run is None:
                return Execution(candidate, job_id, "import", None, [message], starter)
            operation = run.get("Operation") or "import"
            messages: list[dict] = []
            if operation == "import":
                if message is not None:
                    messages = [message]
                else:
                    for mid in (run.get("Messages") or [])[-_MAX_RUN_MESSAGES:]:
                        m = self._messages.find_by_id(mid)
                        if m is not None:
                            messages.append(m)
            return Execution(candidate, job_id, operation, run, messages, starter)
        return None

    def execution_for(self, principal: Principal, execution_id) -> Execution:
        """The visible execution; NotFoundError ExecutionNotFound (404) when unknown or not the caller's."""
        if not execution_id_text(execution_id):
            raise ValidationError("the body needs executionId", code="MissingParameter")
        ex = self.visible_execution(principal, execution_id)
        if ex is None:
            raise NotFoundError(
                f"execution {execution_id_text(execution_id)[:100]!r} does not exist",
                code="ExecutionNotFound",
            )
        return ex

    def summary_status(self, principal: Principal, execution_id) -> str:
        """`Unknown` for an execution that does not exist or that the caller may not see."""
        if not execution_id_text(execution_id):
            raise ValidationError("the body needs executionId", code="MissingParameter")
        ex = self.visible_execution(principal, execution_id)
        return UNKNOWN if ex is None else summary_of(ex)

    def execution_errors(self, principal: Principal, execution_id) -> list[str]:
        ex = self.execution_for(principal, execution_id)
        out: list[str] = []
        rejected = sum(int(m.get("ErrorCount") or 0) for m in ex.messages)
        failed = sum(1 for m in ex.messages if m.get("Status") in _FAILED_MESSAGE)
        if len(ex.messages) > 1 and (rejected or failed):
            # The total first: a client that shows only the first lines still learns how much went wrong
            # across every file (a one-file execution's lines already say it all).
            out.append(
                f"{rejected} rejected record(s) and {failed} failed file(s) in total, across "
                f"{len(ex.messages)} file(s) of this execution"
            )
        for m in ex.messages:
            out += [line.strip() for line in (m.get("ErrorSummary") or "").splitlines() if line.strip()]
        if ex.run:
            # A run's errors repeat its messages' reasons (run_outcome: "message <id> ..."): listed once above.
            listed = tuple(f"message {m.get('MessageId')}" for m in ex.messages)
            out += [
                str(e) for e in ex.run.get("Errors") or [] if e and not (listed and str(e).startswith(listed))
            ]
        return list(dict.fromkeys(out))

    def exported_package_url(self, principal: Principal, execution_id) -> str:
        """GetExportedPackageUrl: a read SAS URL, or "" only while the export has not ended (PROTOCOL §6).

        Clients poll while the answer is "" (RIS up to 100 times after Succeeded), so an execution that
        has ended never answers "" (issue 12, class 5): a package-API export always uploads a package
        (export_service), and anything else that will never have one is a clear error: an import
        execution (400 NotAnExport), a failed or canceled export (409 ExecutionFailed/ExecutionCanceled,
        with the reason), an ended export without a package (409 NoPackage: only a recurring run whose job
        prevents uploads of zero records), a package deleted by retention (410 PackageNoLongerAvailable).
        """
        ex = self.execution_for(principal, execution_id)
        shown = execution_id_text(execution_id)[:100]
        if ex.operation != "export" or ex.run is None:
            raise ValidationError(
                f"execution {shown!r} is an import: only an export (ExportToPackage) has a package to "
                "download; read an import's outcome with GetExecutionSummaryStatus and GetExecutionErrors",
                code="NotAnExport",
            )
        run = ex.run
        status = run.get("Status")
        if status == statuses.RUN_ERROR:
            reason = (
                "; ".join(str(e) for e in run.get("Errors") or [] if e)[:2000] or "no reason was recorded"
            )
            raise ConflictError(
                f"export {shown!r} failed, so it has no package: {reason}", code="ExecutionFailed"
            )
        if status == statuses.RUN_CANCELED:
            raise ConflictError(
                f"export {shown!r} was canceled, so it has no package", code="ExecutionCanceled"
            )
        if status != statuses.RUN_ENDED:
            return ""  # Waiting or Executing: not ready yet
        if not run.get("FileUploaded") or not run.get("BlobName"):
            raise ConflictError(
                f"export {shown!r} ended without a package: it exported no records and its job prevents "
                "uploads when there are zero records (preventUploadWhenZeroRecords)",
                code="NoPackage",
            )
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._clients.container(names.CONTAINER_OUTBOUND).get_blob_client(
                run["BlobName"]
            ).get_blob_properties()
        except ResourceNotFoundError:
            raise AppError(
                f"the package of export {shown!r} is no longer available (deleted after the retention "
                "period); export again",
                code="PackageNoLongerAvailable",
                status=410,
            ) from None
        file_name = run.get("PackageName") or f"{sanitize_file_name(ex.execution_id)}"
        if not file_name.lower().endswith(".zip"):
            file_name += ".zip"
        return sas.read_url(
            self._clients,
            names.CONTAINER_OUTBOUND,
            run["BlobName"],
            content_disposition=f'attachment; filename="{file_name}"',
        )

    def summary_page_url(self, principal: Principal, execution_id, base_url: str) -> str:
        ex = self.execution_for(principal, execution_id)
        if len(ex.messages) == 1:
            return f"{base_url}/api/manage/messages/{ex.messages[0]['MessageId']}"
        return f"{base_url}/api/manage/jobs/{ex.job_id}/runs"

    # Per-entity status, staging errors, version tokens, entity sequence ------------------------------
    def entity_status_list(self, principal: Principal, execution_id) -> list[dict]:
        """GetEntityExecutionSummaryStatusList: each entity of the execution with its status and counts."""
        ex = self.execution_for(principal, execution_id)
        out: list[dict] = []
        if ex.operation == "export" and ex.run is not None:
            status = summary_of(ex)
            for name, count in (ex.run.get("Counts") or {}).items():
                entity = self._config.find_entity(name)
                out.append(
                    _entity_status(
                        entity.label if entity else name,
                        status,
                        int(count or 0),
                        int(count or 0),
                        0,
                        ex.run.get("StartedAt"),
                        ex.run.get("EndedAt"),
                    )
                )
            return out
        for m in ex.messages:
            message_status = statuses.EXECUTION_SUMMARY.get(m.get("Status"), "Executing")
            for key, counts in (m.get("Counts") or {}).items():
                counts = counts or {}
                read, written, rejected = (int(counts.get(k) or 0) for k in ("read", "written", "rejected"))
                if message_status in ("NotRun", "Executing"):
                    status = message_status
                elif counts.get("error") and not written:
                    status = "Failed"
                elif rejected:
                    status = "PartiallySucceeded" if written else "Failed"
                else:
                    status = "Failed" if message_status == "Failed" else "Succeeded"
                name = counts.get("entity") or key
                entity = self._config.find_entity(str(name))
                out.append(
                    _entity_status(
                        entity.label if entity else key,
                        status,
                        read,
                        written,
                        rejected,
                        m.get("EnqueuedAt"),
                        m.get("UpdatedAt") if message_status not in ("NotRun", "Executing") else None,
                    )
                )
        return out

    def staging_error_file_url(self, principal: Principal, execution_id, entity_name) -> str:
        """GetImportStagingErrorFileUrl: a read SAS URL of the entity's rejected records with the reason of
        each (the same file as GetImportTargetErrorKeysFileUrl: records are staged and written in one pass
        here, so every rejection is both a staging and a target error); "" when there are none."""
        return self.error_keys_file_url(principal, execution_id, entity_name)

    def reset_version_token(
        self, principal: Principal, definition_group_id, entity_name, source_name=None
    ) -> bool:
        """ResetVersionToken: the entity's next incremental export (ExportToPackageDelta, or an incremental
        job of the project) exports it in full. True when reset."""
        from shared.services import app_access

        group = _text_param(definition_group_id, "definitionGroupId")
        name = _text_param(entity_name, "entityName")
        app_access.require(principal, app_access.EXPORT)
        project = self._config.find_project(group, "export") if NAME_RE.match(group) else None
        if project is None:
            raise NotFoundError(f"there is no export definition group {group[:80]!r}", code="UnknownProject")
        entity = self._config.find_project_entity(project, name)
        if entity is None:
            raise ValidationError(
                f"the definition group {project.name!r} has no entity {name[:80]!r}", code="UnknownEntity"
            )
        self._config.reset_version_token(project.name, entity.name)
        return True

    def entity_sequence(self, principal: Principal, list_of_data_entities) -> str:
        """GetEntitySequence: the entities, comma-separated, in the order to import them. This app keeps no
        dependency graph between entities (D365 derives one from table relations), so the order is the one
        given; names are answered as their labels, and an unknown entity is a 400."""
        from shared.services import app_access

        app_access.require(principal, app_access.IMPORT)
        names = [n.strip() for n in str(list_of_data_entities or "").split(",") if n.strip()]
        if not names:
            raise ValidationError("the body needs listOfDataEntities", code="MissingParameter")
        out = []
        for n in names:
            entity = self._config.find_entity(n) if len(n) <= 128 else None
            if entity is None:
                raise ValidationError(f"there is no data entity {n[:80]!r}", code="UnknownEntity")
            out.append(entity.label)
        return ",".join(dict.fromkeys(out))

    # Error keys files --------------------------------------------------------------------------
    def _entity_errors(self, ex: Execution, entity_name) -> list[tuple[dict, str]]:
        """(message, Counts key) of each entity of the execution that rejected records, per `entity_name`."""
        wanted: set[str] = set()
        name = execution_id_text(entity_name)
        if name:
            wanted.add(name.casefold())
            usable = len(name) <= 128 and not _EXEC_BAD.search(name)
            entity = self._config.find_entity(name) if usable else None
            if entity is not None:
                wanted |= {entity.name.casefold(), entity.label.casefold()}
        out = []
        for m in ex.messages:
            if not m.get("ErrorFile"):
                continue
            for key, counts in (m.get("Counts") or {}).items():
                base = key.split(" #", 1)[0]
                rejected = int((counts or {}).get("rejected") or 0)
                if rejected > 0 and (not wanted or key.casefold() in wanted or base.casefold() in wanted):
                    out.append((m, key))
        return out

    def _error_keys_blob(self, message: dict, key: str) -> str:
        """The message's error file when only this entity rejected records, else a copy of its rows only."""
        counts = message.get("Counts") or {}
        with_errors = [k for k, c in counts.items() if int((c or {}).get("rejected") or 0) > 0]
        if len(with_errors) <= 1:
            return message["ErrorFile"]
        errors = self._clients.container(names.CONTAINER_ERRORS)
        blob = f"{message['MessageId']}/{sanitize_file_name(key)}.csv"
        client = errors.get_blob_client(blob)
        if client.exists():
            return blob
        from azure.storage.blob import ContentSettings

        from shared.storage.blob_io import open_blob

        base = key.split(" #", 1)[0]
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024, mode="w+b") as out:
            text_out = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            writer = csv.writer(text_out)
            with open_blob(errors, message["ErrorFile"]) as raw:
                reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
                for index, row in enumerate(reader):
                    if index == 0 or (row and row[0] in (key, base)):
                        writer.writerow(row)
            text_out.flush()
            out.seek(0)
            client.upload_blob(
                out, overwrite=True, content_settings=ContentSettings(content_type="text/csv; charset=utf-8")
            )
            text_out.detach()
        return blob

    def generate_error_keys_file(self, principal: Principal, execution_id, entity_name) -> bool:
        ex = self.execution_for(principal, execution_id)
        found = self._entity_errors(ex, entity_name)
        for message, key in found:
            self._error_keys_blob(message, key)
        return bool(found)

    def error_keys_file_url(self, principal: Principal, execution_id, entity_name) -> str:
        """GetImportTargetErrorKeysFileUrl: a read SAS URL of the entity's rejected rows, or "" (PROTOCOL §6).

        "" means "no error keys" (the entity rejected nothing, or the execution has not ended), as in D365,
        where clients ask only after GenerateImportTargetErrorKeysFile answered true. The file is made here
        on demand, so once an execution has ended "" never means "not ready yet" (issue 12, class 5).
        """
        ex = self.execution_for(principal, execution_id)
        found = self._entity_errors(ex, entity_name)
        if not found:
            return ""
        if len(found) == 1:
            message, key = found[0]
            blob, file_key = self._error_keys_blob(message, key), key
        else:
            # An execution that handled several files answers for all of them, in one file.
            blob = self._combined_error_keys_blob(ex, found, entity_name)
            file_key = execution_id_text(entity_name) or "all-entities"
        return sas.read_url(
            self._clients,
            names.CONTAINER_ERRORS,
            blob,
            content_disposition=f'attachment; filename="{sanitize_file_name(file_key)}-errors.csv"',
        )

    def _combined_error_keys_blob(self, ex: Execution, found: list[tuple[dict, str]], entity_name) -> str:
        """One CSV of every rejected record of the execution's messages, each row followed by the message ID
        and the source file (external identifier) it came from. Streamed, rebuilt on each call (the
        execution may still be adding messages)."""
        from azure.storage.blob import ContentSettings

        from shared.storage.blob_io import open_blob

        errors = self._clients.container(names.CONTAINER_ERRORS)
        name = sanitize_file_name(execution_id_text(entity_name) or "all-entities")
        blob = f"executions/{sanitize_file_name(ex.execution_id)}/{name}.csv"
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024, mode="w+b") as out:
            text_out = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            writer = csv.writer(text_out)
            header_written = False
            for message, key in found:
                with open_blob(errors, self._error_keys_blob(message, key)) as raw:
                    reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
                    for index, row in enumerate(reader):
                        if index == 0:
                            if not header_written:
                                writer.writerow([*row, "SourceMessageId", "SourceFile"])
                                header_written = True
                            continue
                        writer.writerow(
                            [*row, message.get("MessageId", ""), message.get("ExternalIdentifier") or ""]
                        )
            text_out.flush()
            out.seek(0)
            errors.get_blob_client(blob).upload_blob(
                out, overwrite=True, content_settings=ContentSettings(content_type="text/csv; charset=utf-8")
            )
            text_out.detach()
        return blob


_FAILED_MESSAGE = frozenset({statuses.PREPROCESSING_ERROR, statuses.POSTPROCESSING_FAILED})
_ENDED_RUN = frozenset({statuses.RUN_ENDED, statuses.RUN_ERROR, statuses.RUN_CANCELED})


def _truthy(value) -> bool:
    """A JSON boolean as clients send it: true, "true", 1."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _entity_status(name, status, total, success, errors, started, ended) -> dict:
    """One DMFEntityExecutionSummaryStatus (GetEntityExecutionSummaryStatusList)."""

    def iso(value):
        return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value

    return {
        "EntityName": name,
        "Status": status,
        "TotalRecords": total,
        "SuccessRecords": success,
        "ErrorRecords": errors,
        "ExecutionStartDateTime": iso(started),
        "ExecutionEndDateTime": iso(ended),
    }


def summary_of(ex: Execution) -> str:
    """The execution summary status (PROTOCOL §6) of an execution."""
    run_status = ex.run.get("Status") if ex.run else None
    if run_status == statuses.RUN_CANCELED:
        return "Canceled"
    if ex.operation == "export" or not ex.messages:
        return _RUN_SUMMARY.get(run_status, UNKNOWN)
    run_id = ex.run.get("RunId") if ex.run else None
    # A message retried in another run left this execution with a failed attempt: it never answers
    # Executing for the message's later life (import_worker._end_abandoned_run records SupersededBy).
    values = [
        "Failed"
        if run_id and m.get("RunId") and m.get("RunId") != run_id
        else statuses.EXECUTION_SUMMARY.get(m.get("Status"), "Executing")
        for m in ex.messages
    ]
    if all(v == "NotRun" for v in values):
        return "NotRun"
    if any(v in ("NotRun", "Executing") for v in values):
        return "Executing"
    if all(v == "Succeeded" for v in values):
        return "Succeeded"
    if all(v == "Failed" for v in values):
        return "Failed"
    return "PartiallySucceeded"
