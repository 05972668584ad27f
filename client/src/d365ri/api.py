"""The recurring-integrations API as D365 defines it (the wire contract is PROTOCOL.md of the design notes).

Connector (`/api/connector/...`): enqueue, dequeue, download, ack, jobstatus. OData actions
(`/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.<Action>`): GetMessageStatus,
GetExecutionIdByMessageId and the package API. Every reply is read as D365 sends it: enqueue's message ID is
a JSON string literal with its quotes, actions answer {"@odata.context", "value"}, GetAzureWriteUrl's value is
a string holding JSON, GetExecutionErrors' value is a string holding a JSON array.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from d365ri.errors import ClientError

ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."

MESSAGE_TERMINAL = {"Processed", "ProcessedWithErrors", "PreProcessingError", "PostProcessingFailed"}
MESSAGE_STATUSES = {"Enqueued", "Dequeued", "Acked", "Preprocessing", "Processing", *MESSAGE_TERMINAL}
EXECUTION_TERMINAL = {"Succeeded", "PartiallySucceeded", "Failed", "Canceled"}
# Outcome of a terminal status: ok, errors (some records rejected), failed.
OUTCOME = {
    "Processed": "ok",
    "Succeeded": "ok",
    "ProcessedWithErrors": "errors",
    "PartiallySucceeded": "errors",
    "PreProcessingError": "failed",
    "PostProcessingFailed": "failed",
    "Failed": "failed",
    "Canceled": "failed",
}
DEQUEUE_FIELDS = (
    "CorrelationId",
    "PopReceipt",
    "DownloadLocation",
    "IsDownLoadFileExist",
    "FileDownLoadErrorMessage",
    "LastDequeueDateTime",
)


def clean_id(value: str) -> str:
    """An ID as a server sent it, minus JSON quotes and braces ("\\"guid\\"", {guid})."""
    text = (value or "").strip()
    if text.startswith('"'):
        try:
            text = json.loads(text)
        except ValueError:
            text = text.strip('"')
    return str(text).strip().strip('"').strip("{}")


class Api:
    def __init__(self, transport, *, quiet: bool = False) -> None:
        self.t = transport
        self.quiet = quiet

    # Connector ---------------------------------------------------------------------------------------
    def enqueue(
        self,
        activity_id: str,
        file: Path,
        *,
        entity: str | None,
        company: str | None,
        external_id: str,
    ) -> str:
        """POST the file's bytes; the message ID. A retry repeats the external ID and the content, so the
        server answers the first message ID instead of storing the file again (PROTOCOL §2)."""
        from d365ri.transfer import upload_file

        params = {}
        if entity:
            params["entity"] = entity
        if company:
            params["company"] = company
        resp = upload_file(
            self.t,
            "POST",
            f"/api/connector/enqueue/{activity_id}",
            file,
            what=f"enqueue of {file.name} to job {activity_id}",
            quiet=self.quiet,
            params=params,
            headers={"x-ms-dyn-externalidentifier": external_id, "Content-Type": "application/octet-stream"},
            job=activity_id,
        )
        message_id = clean_id(resp.text)
        if not message_id:
            raise ClientError(f"enqueue of {file.name}: the server answered 200 without a message ID")
        return message_id

    def dequeue(self, activity_id: str) -> dict | None:
        """The next file's dequeue reply (six fields), or None on 204 (nothing waiting)."""
        resp = self.t.request(
            "GET",
            f"/api/connector/dequeue/{activity_id}",
            what=f"dequeue from job {activity_id}",
            ok=(200, 204),
            job=activity_id,
        )
        if resp.status_code == 204 or not resp.content:
            return None
        reply = resp.json()
        if not isinstance(reply, dict) or not reply.get("CorrelationId"):
            raise ClientError(
                f"dequeue from job {activity_id}: a reply without CorrelationId: {resp.text[:200]}"
            )
        return reply

    def download_location(self, location: str) -> str:
        """The download URL on the base URL's scheme and port when it names the same host.

        D365 has handed out http:// URLs behind TLS (the "Http vs Https" defect); RIS and PSI rewrite them
        to https without the port (PROTOCOL §3). Moving it onto the base URL does the same, and also keeps
        the local host's port."""
        loc, base = urlsplit(location), urlsplit(self.t.base_url)
        if loc.hostname and base.hostname and loc.hostname.lower() == base.hostname.lower():
            return urlunsplit((base.scheme, base.netloc, loc.path, loc.query, ""))
        return location

    def download(self, activity_id: str, reply: dict, target: Path) -> int:
        from d365ri.transfer import download_to

        url = self.download_location(reply["DownloadLocation"])
        return download_to(
            self.t,
            url,
            target,
            what=f"download of {reply['CorrelationId']} from job {activity_id}",
            auth=True,
            quiet=self.quiet,
            job=activity_id,
        )

    def ack(self, activity_id: str, reply: dict) -> None:
        """Acknowledge a dequeued file: the dequeue reply echoed back, six fields as PSI sends them."""
        body = {k: reply.get(k) for k in DEQUEUE_FIELDS}
        self.t.request(
            "POST",
            f"/api/connector/ack/{activity_id}",
            what=f"ack of {reply['CorrelationId']} on job {activity_id}",
            json_body=body,
            job=activity_id,
        )

    def job_status(self, activity_id: str, message_id: str) -> dict:
        """The legacy jobstatus reply (RIS's processing monitor): per-entity counts and states."""
        resp = self.t.request(
            "GET",
            f"/api/connector/jobstatus/{activity_id}",
            what=f"job status of message {message_id}",
            params={"jobId": message_id},
            job=activity_id,
        )
        return resp.json()

    # OData actions -------------------------------------------------------------------------------------
    def action(self, name: str, body: dict, *, what: str | None = None, job: str | None = None):
        resp = self.t.request("POST", ACTION + name, what=what or name, json_body=body, job=job)
        try:
            reply = resp.json()
        except ValueError:
            raise ClientError(f"{name}: the reply is not JSON: {resp.text[:200]}") from None
        if isinstance(reply, dict) and "value" in reply:
            value = reply["value"]
            # Microsoft's docs show a nested {"value": {"value": ...}} for some actions; clients read both.
            if isinstance(value, dict) and set(value) <= {"value", "@odata.context"} and "value" in value:
                value = value["value"]
            return value
        raise ClientError(f"{name}: a reply without 'value': {resp.text[:200]}")

    def message_status(self, message_id: str) -> str:
        return str(self.action("GetMessageStatus", {"messageId": message_id}, what=f"status of {message_id}"))

    def execution_id_of(self, message_id: str) -> str:
        return str(self.action("GetExecutionIdByMessageId", {"_messageId": message_id}) or "")

    def execution_status(self, execution_id: str) -> str:
        return str(
            self.action(
                "GetExecutionSummaryStatus", {"executionId": execution_id}, what=f"status of {execution_id}"
            )
        )

    def execution_errors(self, execution_id: str) -> list[str]:
        value = self.action("GetExecutionErrors", {"executionId": execution_id})
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except ValueError:
                return [value]
        if isinstance(value, list):
            return [v if isinstance(v, str) else json.dumps(v) for v in value]
        return [str(value)]

    def error_keys_url(self, execution_id: str, entity: str) -> str:
        """The URL of the rejected records of one entity, or "" when it has none.

        GenerateImportTargetErrorKeysFile answers whether there are any; the URL may stay "" a little while
        the file is written (PROTOCOL §6), so it is asked a few times."""
        import time

        body = {"executionId": execution_id, "entityName": entity}
        if not self.action("GenerateImportTargetErrorKeysFile", body):
            return ""
        for attempt in range(10):
            url = self.action("GetImportTargetErrorKeysFileUrl", body)
            if url:
                return str(url)
            time.sleep(min(5.0, 0.5 * (attempt + 1)))
        return ""

    def write_url(self, file_name: str) -> tuple[str, str]:
        """GetAzureWriteUrl: (BlobId, BlobUrl) of a fresh upload URL."""
        raw = self.action("GetAzureWriteUrl", {"uniqueFileName": file_name})
        data = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(data, dict) or not data.get("BlobUrl"):
            raise ClientError(f"GetAzureWriteUrl: no BlobUrl in {str(raw)[:200]}")
        return str(data.get("BlobId") or ""), str(data["BlobUrl"])

    def import_from_package(
        self, package_url: str, project: str, execution_id: str, legal_entity: str | None
    ) -> str:
        body = {
            "packageUrl": package_url,
            "definitionGroupId": project,
            "executionId": execution_id,
            "execute": True,
            "overwrite": True,
            "legalEntityId": legal_entity or "",
        }
        return (
            clean_id(str(self.action("ImportFromPackage", body, what=f"import into {project}")))
            or execution_id
        )

    def export_to_package(
        self, project: str, execution_id: str, package_name: str, legal_entity: str | None
    ) -> str:
        body = {
            "definitionGroupId": project,
            "packageName": package_name,
            "executionId": execution_id,
            "reExecute": False,
            "legalEntityId": legal_entity or "",
        }
        return (
            clean_id(str(self.action("ExportToPackage", body, what=f"export of {project}"))) or execution_id
        )

    def exported_package_url(self, execution_id: str) -> str:
        return str(self.action("GetExportedPackageUrl", {"executionId": execution_id}) or "")


def new_execution_id() -> str:
    return str(uuid.uuid4())
