"""D365's DMF actions, bound to the DataManagementDefinitionGroups collection: parameter names and types, return
types. One list, read by $metadata (shared/odata/metadata.py) and checked by the tests against the routes.

Sources (docs/odata.md has the details): Microsoft Learn, "Data management package REST API"
(learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/data-management-api) for ImportFromPackage,
ExportToPackage, GetExecutionSummaryStatus, GetExportedPackageUrl, GetExecutionErrors,
GenerateImportTargetErrorKeysFile, GetImportTargetErrorKeysFileUrl, GetMessageStatus, GetAzureWriteUrl; the
bodies real clients send for the others (mafzaal/d365fo-client `dmf_operations.py`, Microsoft's Recurring
Integrations Scheduler, d365fo.integrations, and the issue's wire captures for ImportFromPackageAsync).
"""

from __future__ import annotations

from shared.odata.names import NAMESPACE

S, B, I32 = "Edm.String", "Edm.Boolean", "Edm.Int32"
_IMPORT = (("packageUrl", S), ("definitionGroupId", S), ("executionId", S), ("execute", B), ("overwrite", B),
           ("legalEntityId", S))  # fmt: skip
_EXPORT = (
    ("definitionGroupId", S),
    ("packageName", S),
    ("executionId", S),
    ("reExecute", B),
    ("legalEntityId", S),
)
_EXEC = (("executionId", S),)
_EXEC_ENTITY = (("executionId", S), ("entityName", S))
ENTITY_STATUS = f"{NAMESPACE}.DMFEntityExecutionSummaryStatus"
SUMMARY_STATUS = f"{NAMESPACE}.DMFExecutionSummaryStatus"

# name -> (parameters (name, EDM type), return type or None)
ACTIONS: dict[str, tuple[tuple[tuple[str, str], ...], str | None]] = {
    "GetAzureWriteUrl": ((("uniqueFileName", S),), S),
    "ImportFromPackage": (_IMPORT, S),
    "ImportFromPackageAsync": (
        (*_IMPORT, ("failOnError", B), ("runAsyncWithoutBatch", B), ("thresholdToRunInBatch", I32)),
        S,
    ),
    "ImportFromDMTPackage": ((*_IMPORT, ("importBatchGroupId", S), ("failOnError", B)), S),
    "ExportToPackage": (_EXPORT, S),
    "ExportToPackageAsync": ((*_EXPORT, ("entityList", S)), S),
    "ExportToPackagePreview": ((*_EXPORT, ("exportPreviewCount", I32)), S),
    "ExportToPackagePreviewAsync": ((*_EXPORT, ("exportPreviewCount", I32)), S),
    "ExportToPackageDelta": ((*_EXPORT, ("entityList", S)), S),
    "ExportFromPackage": (_IMPORT, S),
    "GetExportedPackageUrl": (_EXEC, S),
    "GetExecutionSummaryStatus": (_EXEC, SUMMARY_STATUS),
    "GetEntityExecutionSummaryStatusList": (_EXEC, f"Collection({ENTITY_STATUS})"),
    "GetExecutionErrors": (_EXEC, S),
    "GenerateImportTargetErrorKeysFile": (_EXEC_ENTITY, B),
    "GetImportTargetErrorKeysFileUrl": (_EXEC_ENTITY, S),
    "GetImportStagingErrorFileUrl": (_EXEC_ENTITY, S),
    "GetExecutionSummaryPageUrl": (_EXEC, S),
    "GetMessageStatus": ((("messageId", S),), S),
    "GetExecutionIdByMessageId": ((("_messageId", S),), S),
    "GetEntitySequence": ((("listOfDataEntities", S),), S),
    "ResetVersionToken": ((("definitionGroupId", S), ("entityName", S), ("sourceName", S)), B),
    "InitializeDataManagement": ((), None),
    "InitializeDataManagementAsync": ((), None),
}

OPERATION_TYPE_MEMBERS = (("Import", 0), ("Export", 1))
SUMMARY_STATUS_MEMBERS = (
    ("Unknown", 0),
    ("NotRun", 1),
    ("Executing", 2),
    ("Succeeded", 3),
    ("PartiallySucceeded", 4),
    ("Failed", 5),
    ("Canceled", 6),
)
ENTITY_STATUS_PROPERTIES = (
    ("EntityName", S),
    ("Status", SUMMARY_STATUS),
    ("TotalRecords", "Edm.Int64"),
    ("SuccessRecords", "Edm.Int64"),
    ("ErrorRecords", "Edm.Int64"),
    ("ExecutionStartDateTime", "Edm.DateTimeOffset"),
    ("ExecutionEndDateTime", "Edm.DateTimeOffset"),
)
