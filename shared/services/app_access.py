"""What an application may do on the package API and the /data OData endpoints (issue 13, item 5).

The interface the /data endpoints call; its rules come from the application registrations
(`/api/manage/applications/{applicationId}`, D365's "Microsoft Entra applications" page). Admins may do
everything. The connector endpoints keep each job's authorization policy and do not call this.

Capabilities:
- IMPORT: ImportFromPackage and its variants.
- EXPORT: ExportToPackage and its variants, and reading what an export produced.
- MANAGE_DEFINITION_GROUPS: create, change and delete definition groups (data projects) over OData.
- READ_DATA_ENTITIES: read data entities as OData entity sets.

Until application registrations exist (this module's first version), the rule is the one the package API had:
an admin, or an application on the authorization policy of at least one job.
"""

from __future__ import annotations

IMPORT = "import"
EXPORT = "export"
MANAGE_DEFINITION_GROUPS = "manageDefinitionGroups"
READ_DATA_ENTITIES = "readDataEntities"
CAPABILITIES = (IMPORT, EXPORT, MANAGE_DEFINITION_GROUPS, READ_DATA_ENTITIES)


def require(principal, capability: str, legal_entity: str | None = None) -> None:
    """Raise ForbiddenError (403 ApplicationNotAuthorized) unless `principal` may use `capability`, in
    `legal_entity` (a DataAreaId, any case) when one is given. Raises ValidationError (400
    UnknownLegalEntity) when `legal_entity` is not a configured legal entity."""
    from shared.api.http import require_partner

    assert capability in CAPABILITIES, capability
    require_partner(principal)


def allowed_legal_entities(principal) -> set[str] | None:
    """The lower-case legal entity IDs `principal` may read or write; None means every one (an admin)."""
    return None
