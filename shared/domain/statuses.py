"""Message and run status values, spelled exactly as D365 clients expect (PROTOCOL §4 and §6)."""

from __future__ import annotations

ENQUEUED = "Enqueued"
DEQUEUED = "Dequeued"
ACKED = "Acked"
PREPROCESSING = "Preprocessing"
PROCESSING = "Processing"
PROCESSED = "Processed"
PREPROCESSING_ERROR = "PreProcessingError"
PROCESSED_WITH_ERRORS = "ProcessedWithErrors"
POSTPROCESSING_FAILED = "PostProcessingFailed"

MESSAGE_STATUSES = (
    ENQUEUED,
    DEQUEUED,
    ACKED,
    PREPROCESSING,
    PROCESSING,
    PROCESSED,
    PREPROCESSING_ERROR,
    PROCESSED_WITH_ERRORS,
    POSTPROCESSING_FAILED,
)
IMPORT_TERMINAL = frozenset({PROCESSED, PREPROCESSING_ERROR, PROCESSED_WITH_ERRORS, POSTPROCESSING_FAILED})
IMPORT_ACTIVE = frozenset({PREPROCESSING, PROCESSING})
# Import work that ended without its records (a canceled message ends PostProcessingFailed, with Canceled set:
# D365 has no canceled message status). Operators may reprocess these; a re-send of the file is new work.
IMPORT_FAILED = frozenset({PREPROCESSING_ERROR, POSTPROCESSING_FAILED})

# Runs ("batch jobs")
RUN_WAITING = "Waiting"
RUN_EXECUTING = "Executing"
RUN_ENDED = "Ended"
RUN_ERROR = "Error"
RUN_CANCELED = "Canceled"
RUN_STATUSES = (RUN_WAITING, RUN_EXECUTING, RUN_ENDED, RUN_ERROR, RUN_CANCELED)

# Run triggers
TRIGGER_RECURRENCE = "recurrence"
TRIGGER_MONITORING = "monitoring"
TRIGGER_ON_ARRIVAL = "on-arrival"
TRIGGER_MANUAL = "manual"
TRIGGER_PACKAGE_API = "package-api"
TRIGGER_RETRY = "retry"

# The legacy jobstatus API spells some states differently.
LEGACY_JOB_STATE = {
    ENQUEUED: "Enqueued",
    DEQUEUED: "Dequeued",
    ACKED: "Acked",
    PREPROCESSING: "InProcess",
    PROCESSING: "InProcess",
    PROCESSED: "Processed",
    PROCESSED_WITH_ERRORS: "ProcessedWithErrors",
    PREPROCESSING_ERROR: "PreProcessError",
    POSTPROCESSING_FAILED: "PostProcessError",
}

# Execution summary status of the package API, from a message or run outcome.
EXECUTION_SUMMARY = {
    ENQUEUED: "NotRun",
    PREPROCESSING: "Executing",
    PROCESSING: "Executing",
    PROCESSED: "Succeeded",
    PROCESSED_WITH_ERRORS: "PartiallySucceeded",
    PREPROCESSING_ERROR: "Failed",
    POSTPROCESSING_FAILED: "Failed",
}
