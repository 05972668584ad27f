"""What an application may do on the package API and the /data OData endpoints (issue 13, item 5).

The interface the /data endpoints call; its rules come from the application registrations
(`/api/manage/applications/{applicationId}`, D365's "Microsoft Entra applications" page). The connector
endpoints keep each job's authorization policy and do not call this.

Capabilities:
- IMPORT: ImportFromPackage and its variants, and GetAzureWriteUrl.
- EXPORT: ExportToPackage and its variants, and reading what an export produced.
- MANAGE_DEFINITION_GROUPS: create, change and delete definition groups (data projects) over OData.
- READ_DATA_ENTITIES: read data entities as OData entity sets.

The rules, in order:
1. An admin (the admin role, or AUTH_ADMIN_APPS) may do everything in every legal entity.
2. An application with a registration gets exactly what the registration says: its capabilities in its
   legal entities while it is enabled, nothing while it is disabled.
3. Upgrade rule, for applications without a registration: an application with an enabled entry on the
   authorization policy of an enabled job keeps the package-API access it had before registrations
   existed, IMPORT and EXPORT, in the legal entities of those jobs (every legal entity when one of them has
   no company). It gets neither MANAGE_DEFINITION_GROUPS nor READ_DATA_ENTITIES: those need a registration.
4. Anyone else may do nothing: 403 ApplicationNotAuthorized, saying what an administrator must do.

A legal entity the caller names must be configured and one it may use; otherwise 400 UnknownLegalEntity,
naming only the legal entities it may use. A legal entity it may not use is answered exactly as one that
does not exist, so a caller never learns what it may not see. A caller without the capability at all is
refused (403) before any legal entity is looked at.
"""

from __future__ import annotations

from shared.domain.applications import (
    CAPABILITIES,
    EXPORT,
    IMPORT,
    MANAGE_DEFINITION_GROUPS,
    READ_DATA_ENTITIES,
)
from shared.errors import ForbiddenError

LEGACY_CAPABILITIES = frozenset({IMPORT, EXPORT})
_DOES = {
    IMPORT: "import (ImportFromPackage, GetAzureWriteUrl)",
    EXPORT: "export (ExportToPackage)",
    MANAGE_DEFINITION_GROUPS: "manage definition groups",
    READ_DATA_ENTITIES: "read data entities",
}


def _config():
    from shared.services.registry import config_service

    return config_service()


def _is_admin(principal) -> bool:
    from shared.services.execution_access import is_admin

    return is_admin(principal)


def registration(principal):
    """The caller's application registration (shared.domain.applications.Application), or None."""
    return _config().find_application((principal.app_id or "").lower())


def _legacy_grant(principal) -> tuple[frozenset[str], frozenset[str] | None]:
    app = (principal.app_id or "").lower()
    jobs = [j for j in _config().list_jobs() if j.enabled and app and j.allows(app)]
    if not jobs:
        return frozenset(), frozenset()
    if any(j.legal_entity is None for j in jobs):
        return LEGACY_CAPABILITIES, None
    return LEGACY_CAPABILITIES, frozenset(j.legal_entity for j in jobs)


def grant(principal) -> tuple[frozenset[str], frozenset[str] | None]:
    """(capabilities, legal entities) of the caller; legal entities None means every one."""
    if _is_admin(principal):
        return frozenset(CAPABILITIES), None
    reg = registration(principal)
    if reg is not None:
        if not reg.enabled:
            return frozenset(), frozenset()
        return reg.capabilities, reg.legal_entities
    return _legacy_grant(principal)


def registered(principal) -> bool:
    """Whether the caller has an enabled registration (its access does not come from job policies)."""
    reg = registration(principal)
    return reg is not None and reg.enabled


def may(principal, capability: str, legal_entity: str | None = None) -> bool:
    """require() as a yes/no answer."""
    caps, legal = grant(principal)
    if capability not in caps:
        return False
    if not legal_entity:
        return True
    wanted = legal_entity.strip().lower()
    return wanted in _config().legal_entity_ids() and (legal is None or wanted in legal)


def require(
    principal, capability: str, legal_entity: str | None = None, *, what: str = "legal entity"
) -> None:
    """Raise ForbiddenError (403 ApplicationNotAuthorized) unless `principal` may use `capability`, in
    `legal_entity` (a DataAreaId, any case) when one is given. Raises ValidationError (400
    UnknownLegalEntity) when `legal_entity` is not a configured legal entity that the caller may use (400
    InvalidLegalEntity when it is not a legal entity ID at all). `what` names the parameter in messages."""
    assert capability in CAPABILITIES, capability
    caps, legal = grant(principal)
    if capability not in caps:
        raise _not_authorized(principal, capability)
    if legal_entity is not None and str(legal_entity).strip():
        _config().check_legal_entity(str(legal_entity).strip(), what, visible=legal)


def _not_authorized(principal, capability: str) -> ForbiddenError:
    app = principal.app_id
    reg = registration(principal)
    does = _DOES[capability]
    if reg is not None and not reg.enabled:
        why = f"application {app} is registered but disabled: an administrator enables it"
    elif reg is not None:
        why = (
            f"application {app} may not {does}: an administrator adds the capability {capability!r} to "
            f"its registration (PUT /api/manage/applications/{app})"
        )
    elif capability in LEGACY_CAPABILITIES:
        why = (
            f"application {app} may not {does}: an administrator registers it with the capability "
            f"{capability!r} and its legal entities (PUT /api/manage/applications/{app}), or adds it, "
            "enabled, to the authorization policy of an enabled job"
        )
    else:
        why = (
            f"application {app} may not {does}: an administrator registers it with the capability "
            f"{capability!r} and its legal entities (PUT /api/manage/applications/{app})"
        )
    return ForbiddenError(why, code="ApplicationNotAuthorized")


def require_any(principal, *capabilities: str) -> None:
    """`require` for the first of `capabilities` the caller has (every capability when none is given);
    raises the last refusal when it has none of them."""
    from shared.errors import ForbiddenError

    last = None
    for capability in capabilities or CAPABILITIES:
        try:
            require(principal, capability)
            return
        except ForbiddenError as exc:
            last = exc
    raise last  # type: ignore[misc]


def allowed_legal_entities(principal) -> set[str] | None:
    """The lower-case legal entity IDs `principal` may read or write with any capability; None means every
    one (an admin, or a registration for `*`). Only configured legal entities are listed."""
    caps, legal = grant(principal)
    if legal is None and caps:
        return None
    if not caps:
        return set()
    return set(legal or ()) & set(_config().legal_entity_ids())


__all__ = [
    "CAPABILITIES",
    "EXPORT",
    "IMPORT",
    "MANAGE_DEFINITION_GROUPS",
    "READ_DATA_ENTITIES",
    "allowed_legal_entities",
    "grant",
    "may",
    "registered",
    "registration",
    "require",
]
