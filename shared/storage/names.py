"""Names of every container, queue and table: the one source that code, tests and Bicep agree on."""

from __future__ import annotations

# Blob containers
CONTAINER_INBOUND = "inbound"
CONTAINER_OUTBOUND = "outbound"
CONTAINER_UPLOADS = "uploads"
CONTAINER_ERRORS = "errors"
CONTAINER_ARTIFACTS = "artifacts"
# Import checkpoints: staged rows of big files, so a retried attempt resumes (shared/services/import_checkpoint.py)
CONTAINER_STAGING = "staging"
CONTAINERS: tuple[str, ...] = (
    CONTAINER_INBOUND,
    CONTAINER_OUTBOUND,
    CONTAINER_UPLOADS,
    CONTAINER_ERRORS,
    CONTAINER_ARTIFACTS,
    CONTAINER_STAGING,
)

# Queues (the host moves failing messages to "<queue>-poison")
QUEUE_IMPORT = "import-work"
QUEUE_EXPORT = "export-work"
POISON_SUFFIX = "-poison"
QUEUE_IMPORT_POISON = QUEUE_IMPORT + POISON_SUFFIX
QUEUE_EXPORT_POISON = QUEUE_EXPORT + POISON_SUFFIX
QUEUES: tuple[str, ...] = (QUEUE_IMPORT, QUEUE_EXPORT, QUEUE_IMPORT_POISON, QUEUE_EXPORT_POISON)

# Tables
TABLE_CONFIG = "config"
TABLE_MESSAGES = "messages"
TABLE_MESSAGE_INDEX = "messageindex"
TABLE_RUNS = "runs"
TABLE_RUN_INDEX = "runindex"
TABLE_QUEUE_LOAD = "queueload"
TABLE_SCHEDULE = "schedule"
TABLE_LEASES = "leases"
TABLES: tuple[str, ...] = (
    TABLE_CONFIG,
    TABLE_MESSAGES,
    TABLE_MESSAGE_INDEX,
    TABLE_RUNS,
    TABLE_RUN_INDEX,
    TABLE_QUEUE_LOAD,
    TABLE_SCHEDULE,
    TABLE_LEASES,
)

# Entity data lives in one table per entity, created on first use: "ent" + a sanitized name.
ENTITY_TABLE_PREFIX = "ent"

# Settings the app reads (also written by Bicep)
SETTING_STORAGE = "AzureWebJobsStorage"
