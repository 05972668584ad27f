"""The public names under which /data serves things (D365's "public collection name" of a data entity)."""

from __future__ import annotations

import re

# The namespace of D365's OData model: entity types, enum types and actions are qualified with it
# (for example Microsoft.Dynamics.DataEntities.DMFOperationType'Export').
NAMESPACE = "Microsoft.Dynamics.DataEntities"


def collection_name(entity) -> str:
    """The entity set name of a data entity: its configured `public_collection_name` when it has one, else its
    name with every character that an OData identifier cannot hold removed (`CustCustomerGroupEntity`)."""
    configured = getattr(entity, "public_collection_name", None)
    if configured:
        return configured
    name = re.sub(r"[^A-Za-z0-9_]", "", entity.name)
    return name if name and not name[0].isdigit() else f"_{name}"
