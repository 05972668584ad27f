"""Legal entities (D365 companies, `DataAreaId`): the companies jobs, enqueue, the package API and OData may name.

A legal entity is `{id, name}`. The ID is a DataAreaId: at most 4 characters (letters, digits, '_' or '-',
starting with a letter or digit), case-insensitive, stored and shown in lower case as records and messages
carry it. IDs of up to limits.COMPANY_MAX_LENGTH characters exist only where the upgrade migration made them
from the companies of existing jobs (config_access.migrate_legal_entities), which were allowed that long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.domain import limits
from shared.domain.config import _obj, _str, _unknown, check_company, preview
from shared.errors import ValidationError

ID_MAX_LENGTH = 4
"""D365's DataAreaId has at most 4 characters."""
NAME_MAX_LENGTH = 60
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,3}$")
UNKNOWN = "UnknownLegalEntity"


@dataclass(frozen=True)
class LegalEntity:
    id: str  # lower case
    name: str = ""


def check_legal_entity_id(value: Any, what: str = "legal entity ID") -> str:
    """The ID in lower case; 400 InvalidLegalEntity unless it is a DataAreaId (at most 4 characters)."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise ValidationError(
            f"{what} {preview(value)} is not a legal entity ID (DataAreaId): 1-{ID_MAX_LENGTH} letters, "
            "digits, '_' or '-', starting with a letter or digit",
            code="InvalidLegalEntity",
        )
    return value.lower()


def parse_legal_entity(legal_entity_id: str, body: Any, *, legacy: bool = False) -> LegalEntity:
    """A legal entity from its PUT body `{"name": ...}` (an `id` member, when sent, must be the path's).
    `legacy`: an ID as jobs could name companies before legal entities existed (up to 10 characters)."""
    if legacy:
        check_company(legal_entity_id, "legal entity ID")
        ident = legal_entity_id.lower()
    else:
        ident = check_legal_entity_id(legal_entity_id)
    body = _obj(body, "legal entity")
    _unknown(body, {"id", "name"}, "")
    sent = _str(body, "id", "", max_length=limits.COMPANY_MAX_LENGTH)
    if sent is not None and sent.lower() != ident:
        raise ValidationError(f"id {preview(sent)} is not the ID of the path ({ident})")
    name = (_str(body, "name", "", default="", max_length=NAME_MAX_LENGTH) or "").strip()
    return LegalEntity(ident, name)


def legal_entity_to_json(entity: LegalEntity) -> dict:
    return {"id": entity.id, "name": entity.name}


def unknown_legal_entity(
    value: str, valid: list[str] | set[str], what: str = "legal entity"
) -> ValidationError:
    """400 UnknownLegalEntity naming the legal entities `valid` (only those the caller may see)."""
    shown = preview(value.strip() if isinstance(value, str) else value, 40)
    listed = ", ".join(sorted(valid)) or "none"
    return ValidationError(
        f"{what} {shown} is not a legal entity you may use; the legal entities you may use are: {listed}",
        code=UNKNOWN,
    )
