"""Changes to configuration documents: JSON merge patches, and entity changes that stored records cannot follow."""

from __future__ import annotations

from typing import Any

from shared.domain.schema import Entity
from shared.errors import ValidationError


def merge_patch(target: Any, patch: Any) -> Any:
    """`target` with `patch` applied, as RFC 7396 §2 defines it: an object patch merges member by member,
    recursively; a null member removes the member; anything else (an array, a string, a number) replaces
    the target's value whole. Neither argument is modified. Depth is bounded by the JSON parser
    (shared/api/json_body.MAX_DEPTH)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def patch_object(patch: Any, what: str) -> dict:
    """The patch, which must be a JSON object: a patch that is not one would replace the whole document
    (RFC 7396), which is what PUT is for."""
    if not isinstance(patch, dict):
        raise ValidationError(
            f"the patch of the {what} must be a JSON object (RFC 7396 JSON merge patch); to replace the whole "
            "document, use PUT",
            code="InvalidPatch",
        )
    return patch


def record_breaking_changes(old: Entity, new: Entity) -> list[str]:
    """What in `new` stored records of `old` cannot follow, one sentence each; [] when nothing.

    Records are stored with typed properties under the field names, a row key made of the key fields'
    values in order, and a partition that holds the company when the entity is company-specific
    (shared/storage/entity_repo.encode_record). So these break: a field's type (stored values keep the old
    type), a field renamed by case only (Table property names are case-sensitive: the stored values stay
    under the old name), the keys or their order (old rows keep their old row keys, so a record imported
    again lands beside its old row), and companySpecific (old rows keep their old partitions). Adding
    fields, removing non-key fields, labels, `required`, `maxLength` and enum values change nothing stored.
    """
    changes: list[str] = []
    new_fields = {f.name.upper(): f for f in new.fields}
    for f in old.fields:
        now = new_fields.get(f.name.upper())
        if now is None:
            continue
        if now.type != f.type:
            changes.append(f"field {f.name} changes type from {f.type} to {now.type}")
        if now.name != f.name:
            changes.append(f"field {f.name} is renamed to {now.name} (stored values keep the old name)")
    if [k.upper() for k in old.keys] != [k.upper() for k in new.keys]:
        changes.append(f"keys change from [{', '.join(old.keys)}] to [{', '.join(new.keys)}]")
    if old.company_specific != new.company_specific:
        changes.append(
            f"companySpecific changes from {str(old.company_specific).lower()} to "
            f"{str(new.company_specific).lower()}"
        )
    return changes
