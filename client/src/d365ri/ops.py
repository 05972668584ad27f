"""The partner tasks built from the API calls: send a file, follow it to its end, receive files, packages.

Shapes returned are plain dicts (camelCase keys), printed as tables or as JSON by the CLI.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from d365ri.api import EXECUTION_TERMINAL, MESSAGE_TERMINAL, OUTCOME, Api, new_execution_id
from d365ri.config import JobRef
from d365ri.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RUNNING,
    EXIT_WITH_ERRORS,
    ApiError,
    ClientError,
    TooLargeError,
    UsageError,
)
from d365ri.files import free_name, safe_name, sha256_file

# Execution IDs of the package path: uuid5 of (job, external ID, content), so sending the same file again, by a
# retry or after a crash, names the same execution and the server refuses to import it twice.
_EXEC_NS = uuid.UUID("5d1c6a8e-9a57-4f4e-8d0e-3c4d365e1a01")


def fault_point(name: str) -> None:
    """Test hook: D365RI_FAULT_EXIT=<name>[:<n>] ends the process abruptly at the n-th pass through `name`
    (a crash at the worst moment, for the restart tests). Never set outside tests."""
    spec = os.environ.get("D365RI_FAULT_EXIT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    left = int(count or "1") - 1
    if left <= 0:
        os._exit(70)
    os.environ["D365RI_FAULT_EXIT"] = f"{point}:{left}"


def exit_code_for(status: str | None) -> int:
    outcome = OUTCOME.get(status or "")
    return {"ok": EXIT_OK, "errors": EXIT_WITH_ERRORS, "failed": EXIT_FAILED}.get(outcome or "", EXIT_RUNNING)


@dataclass
class SendOptions:
    entity: str | None = None
    company: str | None = None
    external_id: str | None = None
    project: str | None = None
    package: str = "auto"  # auto (by size and on 413), always, never
    template: Path | None = None
    source_format: str | None = None
    execution_id: str | None = None


def package_execution_id(activity_id: str, external_id: str, digest: str) -> str:
    return str(uuid.uuid5(_EXEC_NS, f"{activity_id.lower()}|{external_id}|{digest}"))


def send_file(
    api: Api, job: JobRef, file: Path, opts: SendOptions, *, max_enqueue_bytes: int, log=print
) -> dict:
    """Enqueue `file` to the job, or import it through the package API when it is over the enqueue limit
    (known from the profile, or learnt from a 413). A dict: path, job, file, size, externalId, and
    messageId (enqueue) or executionId (package API), plus alreadyImported when the server had it."""
    if not file.is_file():
        raise UsageError(f"{file} is not a file")
    size = file.stat().st_size
    external_id = opts.external_id or file.name
    entity = opts.entity or job.entity
    company = opts.company or job.company
    result = {"job": job.activity_id, "file": str(file), "size": size, "externalId": external_id}
    use_package = opts.package == "always" or (opts.package == "auto" and size > max_enqueue_bytes)
    if not use_package:
        try:
            message_id = api.enqueue(
                job.activity_id, file, entity=entity, company=company, external_id=external_id
            )
            fault_point("after-enqueue")
            return {**result, "path": "enqueue", "messageId": message_id}
        except TooLargeError as exc:
            if opts.package == "never":
                raise
            log(f"{file.name}: {exc.message}; switching to the package API")
    return {**result, **import_file_as_package(api, job, file, opts, external_id=external_id, log=log)}


def import_file_as_package(
    api: Api, job: JobRef, file: Path, opts: SendOptions, *, external_id: str, log
) -> dict:
    project = opts.project or job.project
    if not project:
        raise UsageError(
            f"{file.name} ({file.stat().st_size} bytes) must go through the package API, which needs the job's "
            "data project: pass --project NAME or set 'project' on the job in the profile"
        )
    digest = sha256_file(file)
    execution_id = opts.execution_id or package_execution_id(job.activity_id, external_id, digest)
    legal = opts.company or job.company
    out = {"path": "package", "executionId": execution_id, "project": project}
    if api.execution_status(execution_id) not in ("", "Unknown"):
        log(f"{file.name}: already imported as execution {execution_id}; not sent again")
        return {**out, "alreadyImported": True}
    with tempfile.TemporaryDirectory(prefix="d365ri-") as tmp:
        if opts.template is None and _is_package(file):
            package = file
        else:
            from d365ri.package import build_package

            package = build_package(
                file,
                Path(tmp) / (Path(safe_name(file.name)).stem + ".zip"),
                project=project,
                entity=opts.entity or job.entity,
                source_format=opts.source_format,
                template=opts.template,
            )
        execution_id = upload_and_import(api, package, project, execution_id, legal, name=external_id)
    if execution_id is None:
        return {**out, "alreadyImported": True}
    return out


def _is_package(file: Path) -> bool:
    from d365ri.package import is_package

    return is_package(file)


def upload_and_import(
    api: Api, package: Path, project: str, execution_id: str, legal: str | None, *, name: str
):
    """GetAzureWriteUrl, the blob upload, ImportFromPackage; the execution ID, or None when the server
    already has an execution with this ID (ExecutionIdInUse: imported before)."""
    from d365ri.transfer import upload_to_blob

    upload_name = Path(safe_name(name)).stem + ".zip"
    _, blob_url = api.write_url(upload_name)
    upload_to_blob(api.t, blob_url, package, quiet=api.quiet)
    fault_point("after-upload")
    try:
        return api.import_from_package(blob_url, project, execution_id, legal)
    except ApiError as exc:
        if exc.code == "ExecutionIdInUse":
            return None
        raise


def wait_for(
    get_status: Callable[[], str],
    terminal: set[str],
    *,
    timeout: float | None,
    poll: float = 1.0,
    on_change: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll until a terminal status or `timeout` seconds (None: forever); the last status seen.
    The interval grows from `poll` to 15 s so that a long import costs few calls."""
    deadline = None if timeout is None else time.monotonic() + timeout
    interval, last = poll, None
    while True:
        status = get_status()
        if status != last and on_change is not None:
            on_change(status)
        last = status
        if status in terminal or (deadline is not None and time.monotonic() >= deadline):
            return status
        wait = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
        sleep(wait)
        interval = min(15.0, interval * 1.5)


def wait_message(
    api: Api, message_id: str, *, timeout: float | None, poll: float = 1.0, on_change=None
) -> str:
    return wait_for(
        lambda: api.message_status(message_id),
        MESSAGE_TERMINAL,
        timeout=timeout,
        poll=poll,
        on_change=on_change,
    )


def wait_execution(
    api: Api, execution_id: str, *, timeout: float | None, poll: float = 1.0, on_change=None
) -> str:
    return wait_for(
        lambda: api.execution_status(execution_id),
        EXECUTION_TERMINAL,
        timeout=timeout,
        poll=poll,
        on_change=on_change,
    )


def error_details(
    api: Api,
    *,
    execution_id: str,
    entities: list[str],
    errors_dir: Path | None = None,
) -> dict:
    """The execution's errors and, per entity, its rejected records (saved under `errors_dir` when given)."""
    out: dict = {"executionId": execution_id, "errors": [], "rejected": []}
    if not execution_id:
        return out
    out["errors"] = api.execution_errors(execution_id)
    for entity in entities or [""]:
        url = api.error_keys_url(execution_id, entity)
        if not url:
            continue
        item = {"entity": entity or None, "url": url}
        if errors_dir is not None:
            from d365ri.transfer import download_to

            name = safe_name(f"{execution_id}-{entity or 'rejected'}-errors.csv")
            target = errors_dir / name
            item["size"] = download_to(
                api.t,
                url,
                target,
                what=f"rejected records of {entity or execution_id}",
                auth=False,
                quiet=api.quiet,
            )
            item["file"] = str(target)
            item.pop("url")
        out["rejected"].append(item)
    return out


def message_report(
    api: Api, message_id: str, status: str, *, job: str | None, entity: str | None, errors_dir: Path | None
) -> dict:
    """Status plus, for an import that did not end Processed, its errors and rejected records."""
    report: dict = {"messageId": message_id, "status": status, "outcome": OUTCOME.get(status, "running")}
    entities = [entity] if entity else []
    if job:
        try:
            detail = api.job_status(job, message_id)
        except ApiError:
            detail = {}
        rows = detail.get("ExecutionDetail") or []
        report["entities"] = [
            {
                "entity": r.get("EntityName"),
                "company": r.get("Company"),
                "staged": r.get("StagingRecords"),
                "stagingErrors": r.get("StagingErrorCount"),
                "written": r.get("TargetRecords"),
                "targetErrors": r.get("TargetErrorCount"),
                "state": r.get("TargetStatus"),
            }
            for r in rows
            if isinstance(r, dict)
        ]
        if not entities:
            entities = [e["entity"] for e in report["entities"] if e["entity"]]
    if status in MESSAGE_TERMINAL and status != "Processed":
        execution_id = api.execution_id_of(message_id)
        report.update(error_details(api, execution_id=execution_id, entities=entities, errors_dir=errors_dir))
    return report


def execution_report(
    api: Api, execution_id: str, status: str, *, entity: str | None, errors_dir: Path | None
) -> dict:
    report: dict = {"executionId": execution_id, "status": status, "outcome": OUTCOME.get(status, "running")}
    if status in ("PartiallySucceeded", "Failed"):
        report.update(
            error_details(
                api, execution_id=execution_id, entities=[entity] if entity else [], errors_dir=errors_dir
            )
        )
    return report


# Receiving ---------------------------------------------------------------------------------------------
def output_name(reply: dict) -> str:
    """The file name of a dequeued file: unique per CorrelationId, so a redelivery overwrites its own copy."""
    corr = safe_name(str(reply["CorrelationId"]).strip("{}"))
    return f"{corr}.zip"


def dequeue_all(
    api: Api,
    job: JobRef,
    out_dir: Path,
    *,
    ack: bool = True,
    limit: int | None = None,
    state=None,
    log=print,
) -> list[dict]:
    """Dequeue until 204: download each file atomically (size checked), then ack it, in that order.

    `state` (watch.State) records each file on disk before its ack, so that a restart acks what is already
    there instead of downloading it again, and skips a redelivered file that was already received."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done: list[dict] = []
    while limit is None or len(done) < limit:
        reply = api.dequeue(job.activity_id)
        if reply is None:
            break
        corr = str(reply["CorrelationId"])
        item = {"correlationId": corr, "job": job.activity_id}
        if not reply.get("DownloadLocation") or reply.get("IsDownLoadFileExist") is False:
            raise ClientError(
                f"dequeue from job {job.activity_id}: file {corr} cannot be downloaded: "
                f"{reply.get('FileDownLoadErrorMessage') or 'no DownloadLocation'}",
                hint="it is offered again after the job's redelivery timeout; ask the administrator to check it",
            )
        known = state.download(corr) if state is not None else None
        target = out_dir / output_name(reply)
        if known and known.get("onDisk"):
            item.update(file=known["file"], size=known["size"], redelivered=True)
            log(f"{corr}: already received as {known['file']}; acknowledging it again")
        else:
            size = api.download(job.activity_id, reply, target)
            item.update(file=str(target), size=size)
            if state is not None:
                state.record_download(corr, reply, str(target), size)
            fault_point("after-download")
        if ack:
            api.ack(job.activity_id, reply)
            if state is not None:
                state.record_ack(corr)
            item["acked"] = True
        done.append(item)
    return done


# Packages ----------------------------------------------------------------------------------------------
def export_package(
    api: Api,
    project: str,
    out_dir: Path,
    *,
    legal_entity: str | None,
    execution_id: str | None,
    package_name: str | None,
    timeout: float | None,
    on_change=None,
) -> dict:
    """ExportToPackage, poll to the end, then fetch the package from its URL (no token) into `out_dir`."""
    execution_id = execution_id or new_execution_id()
    name = package_name or f"{project}-{execution_id}"
    execution_id = api.export_to_package(project, execution_id, name, legal_entity)
    status = wait_execution(api, execution_id, timeout=timeout, on_change=on_change)
    report: dict = {"executionId": execution_id, "project": project, "status": status}
    report["outcome"] = OUTCOME.get(status, "running")
    if status not in ("Succeeded", "PartiallySucceeded"):
        if status in EXECUTION_TERMINAL:
            report["errors"] = api.execution_errors(execution_id)
        return report
    url = ""
    for attempt in range(20):  # "" while the package is being written (PROTOCOL §6)
        url = api.exported_package_url(execution_id)
        if url:
            break
        time.sleep(min(5.0, 0.5 * (attempt + 1)))
    if not url:
        raise ClientError(f"export {execution_id} ended {status} but its package URL stayed empty")
    from d365ri.transfer import download_to

    target = free_name(
        out_dir, safe_name(name if name.lower().endswith(".zip") else name + ".zip"), execution_id[:8]
    )
    report["size"] = download_to(
        api.t, url, target, what=f"package of {execution_id}", auth=False, quiet=api.quiet
    )
    report["file"] = str(target)
    return report


def import_package(
    api: Api,
    file: Path,
    project: str,
    *,
    legal_entity: str | None,
    execution_id: str | None,
) -> dict:
    """Upload a data package and import it (GetAzureWriteUrl, blob upload, ImportFromPackage)."""
    from d365ri.package import is_package

    if not is_package(file):
        raise UsageError(
            f"{file} is not a data package (a zip with Manifest.xml at its root)",
            hint="to send one data file through the package API use `d365ri enqueue --package always`",
        )
    execution_id = execution_id or new_execution_id()
    got = upload_and_import(api, file, project, execution_id, legal_entity, name=file.name)
    if got is None:
        raise ClientError(
            f"the execution ID {execution_id} is already in use",
            hint="leave --execution-id out for a new one, or follow that execution with `d365ri status --execution`",
        )
    return {"executionId": got, "project": project, "file": str(file), "size": file.stat().st_size}
