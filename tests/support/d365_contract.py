"""The reply contracts of D365 clients, and a walker that lists every null and wrong type (issue 12, class 3).

Sources: microsoft/Recurring-Integrations-Scheduler Common/Contracts (DataJobStatus.cs,
EntityExecutionStatus.cs, ContractEnums.cs, DataJobStatusDetail.cs) for the typed jobstatus reply; PROTOCOL
§3, §4 and §6 for the dequeue reply, the status values and the OData action envelopes.
"""

from __future__ import annotations

import json
import re

# A leaf is a kind ("string", "int", "bool", "datetime", "json-string:<contract name>"), a kind with "?"
# when D365 itself sends null there, or a frozenset of enum names.
DATA_JOB_STATES = frozenset(
    [
        "Enqueued",
        "Dequeued",
        "Downloaded",
        "Acked",
        "InProcess",
        "Processed",
        "ProcessedWithErrors",
        "PostProcessError",
        "PreProcessError",
    ]
)  # RIS ContractEnums.cs DataJobState
ENTITY_STATES = frozenset(
    [
        "NotStarted",
        "Waiting",
        "Executing",
        "Error",
        "Finished",
        "Ready",
        "NotRun",
        "Cancelling",
        "Canceled",
        "Hold",
    ]
)  # RIS ContractEnums.cs EntityExecutionStateEnum
MESSAGE_STATUSES = frozenset(
    [
        "Enqueued",
        "Dequeued",
        "Acked",
        "Preprocessing",
        "Processing",
        "Processed",
        "PreProcessingError",
        "ProcessedWithErrors",
        "PostProcessingFailed",
    ]
)  # PROTOCOL §4
SUMMARY_STATUSES = frozenset(
    ["Unknown", "NotRun", "Executing", "Succeeded", "PartiallySucceeded", "Failed", "Canceled"]
)

JOBSTATUS = {
    "DataJobStatus": {
        "DataProject": "string",
        "DataJobIdentifier": "string",
        "ExternalIdentifier": "string",
        "ExecutionIdentifier": "string",
        "DataJobStartedDateTime": "datetime",
        "DataJobCompletedDateTime": "datetime",
        "DataJobState": DATA_JOB_STATES,
    },
    "ExecutionLog": "string",
    "ExecutionDetail": [
        {
            "EntityName": "string",
            "Company": "string",
            "StagingRecords": "int",
            "StagingStatus": ENTITY_STATES,
            "StagingErrorCount": "int",
            "TargetRecords": "int",
            "TargetStatus": ENTITY_STATES,
            "TargetErrorCount": "int",
            "ExecutionStartedDateTime": "datetime",
            "ExecutionCompletedDateTime": "datetime",
        }
    ],
}
DEQUEUE = {
    "CorrelationId": "string",
    "PopReceipt": "string",
    "DownloadLocation": "string",
    "IsDownLoadFileExist": "bool",
    "FileDownLoadErrorMessage": "string?",
    "LastDequeueDateTime": "datetime?",
}
WRITE_URL = {"BlobId": "string", "BlobUrl": "string"}


def odata(value) -> dict:
    return {"@odata.context": "string", "value": value}


ACTIONS = {
    "GetMessageStatus": odata(MESSAGE_STATUSES),
    "GetExecutionIdByMessageId": odata("string"),
    "GetAzureWriteUrl": odata("json-string:WRITE_URL"),
    "ImportFromPackage": odata("string"),
    "ExportToPackage": odata("string"),
    "GetExecutionSummaryStatus": odata(SUMMARY_STATUSES),
    "GetExecutionErrors": odata("json-string:ERRORS"),
    "GetExportedPackageUrl": odata("string"),
    "GenerateImportTargetErrorKeysFile": odata("bool"),
    "GetImportTargetErrorKeysFileUrl": odata("string"),
    "GetExecutionSummaryPageUrl": odata("string"),
}
JSON_STRINGS = {"WRITE_URL": WRITE_URL, "ERRORS": ["string"]}
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def violations(value, contract, path: str = "$") -> list[str]:
    """Every place where `value` has null, a missing field or a value of another type than `contract`."""
    if isinstance(contract, dict):
        if not isinstance(value, dict):
            return [f"{path}: {value!r} is not an object"]
        out = [f"{path}.{k}: missing" for k in contract if k not in value]
        for key, sub in contract.items():
            if key in value:
                out += violations(value[key], sub, f"{path}.{key}")
        return out
    if isinstance(contract, list):
        if not isinstance(value, list):
            return [f"{path}: {value!r} is not an array"]
        return [p for i, item in enumerate(value) for p in violations(item, contract[0], f"{path}[{i}]")]
    if isinstance(contract, frozenset):
        return [] if value in contract else [f"{path}: {value!r} is not one of the enum's names"]
    kind, nullable = contract.rstrip("?"), contract.endswith("?")
    if value is None:
        return [] if nullable else [f"{path}: null where the contract has a {kind}"]
    if kind.startswith("json-string:"):
        if not isinstance(value, str):
            return [f"{path}: {value!r} is not a string holding JSON"]
        return violations(json.loads(value), JSON_STRINGS[kind.split(":", 1)[1]], f"{path}<json>")
    ok = {
        "string": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "datetime": lambda v: isinstance(v, str) and bool(_DATETIME.match(v)),
    }[kind](value)
    return [] if ok else [f"{path}: {value!r} is not a {kind}"]
