"""Application registrations (D365's "Microsoft Entra applications" page): what an application may do, and where.

`{"name", "enabled", "capabilities": [...], "legalEntities": [...] | "*"}` under the application (client)
ID. Capabilities are those of shared.services.app_access: import, export, manageDefinitionGroups,
readDataEntities. `legalEntities` lists the legal entities (DataAreaIds) it may use, or is `"*"` for every
legal entity, also those created later. A registration grants nothing while `enabled` is false.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.domain.config import _bool, _obj, _str, _unknown, check_company, parse_guid, preview
from shared.errors import ValidationError

IMPORT = "import"
EXPORT = "export"
MANAGE_DEFINITION_GROUPS = "manageDefinitionGroups"
READ_DATA_ENTITIES = "readDataEntities"
CAPABILITIES = (IMPORT, EXPORT, MANAGE_DEFINITION_GROUPS, READ_DATA_ENTITIES)
ALL_LEGAL_ENTITIES = "*"
NAME_MAX_LENGTH = 128
MAX_LEGAL_ENTITIES = 500


@dataclass(frozen=True)
class Application:
    application_id: str  # lower-case GUID
    name: str = ""
    enabled: bool = True
    capabilities: frozenset[str] = frozenset()
    legal_entities: frozenset[str] | None = frozenset()  # lower case; None: every legal entity

    def may(self, capability: str) -> bool:
        return self.enabled and capability in self.capabilities

    def covers(self, legal_entity: str) -> bool:
        return self.legal_entities is None or legal_entity.lower() in self.legal_entities


def parse_application(application_id: str, body: Any) -> Application:
    app_id = parse_guid(application_id, "applicationId").lower()
    body = _obj(body, "application")
    _unknown(body, {"applicationId", "name", "enabled", "capabilities", "legalEntities"}, "")
    if body.get("applicationId") is not None and parse_guid(body["applicationId"], "applicationId") != app_id:
        raise ValidationError(f"applicationId {preview(body['applicationId'])} is not the path's ({app_id})")
    name = (_str(body, "name", "", default="", max_length=NAME_MAX_LENGTH) or "").strip()
    raw_caps = body.get("capabilities")
    if raw_caps is None:
        raw_caps = []
    if not isinstance(raw_caps, list) or not all(isinstance(c, str) for c in raw_caps):
        raise ValidationError(f"capabilities must be a list of: {', '.join(CAPABILITIES)}")
    by_lower = {c.lower(): c for c in CAPABILITIES}
    caps = set()
    for i, cap in enumerate(raw_caps[: len(CAPABILITIES) * 4]):
        if cap.lower() not in by_lower:
            raise ValidationError(
                f"capabilities[{i}] {preview(cap, 40)} is not a capability; use: {', '.join(CAPABILITIES)}",
                code="UnknownCapability",
            )
        caps.add(by_lower[cap.lower()])
    if len(raw_caps) > len(CAPABILITIES) * 4:
        raise ValidationError("capabilities has too many items", code="TooManyItems")
    raw_les = body.get("legalEntities")
    legal: frozenset[str] | None
    if raw_les == ALL_LEGAL_ENTITIES or raw_les == [ALL_LEGAL_ENTITIES]:
        legal = None
    elif raw_les is None:
        legal = frozenset()
    elif isinstance(raw_les, list) and len(raw_les) <= MAX_LEGAL_ENTITIES:
        items = set()
        for i, le in enumerate(raw_les):
            if not isinstance(le, str):
                raise ValidationError(f"legalEntities[{i}] must be a string")
            check_company(le, f"legalEntities[{i}]")
            items.add(le.lower())
        legal = frozenset(items)
    else:
        raise ValidationError(
            f'legalEntities must be a list of at most {MAX_LEGAL_ENTITIES} legal entity IDs, or "*" for every one'
        )
    return Application(
        application_id=app_id,
        name=name,
        enabled=_bool(body, "enabled", "", True),
        capabilities=frozenset(caps),
        legal_entities=legal,
    )


def application_to_json(app: Application) -> dict:
    return {
        "applicationId": app.application_id,
        "name": app.name,
        "enabled": app.enabled,
        "capabilities": [c for c in CAPABILITIES if c in app.capabilities],
        "legalEntities": ALL_LEGAL_ENTITIES if app.legal_entities is None else sorted(app.legal_entities),
    }
