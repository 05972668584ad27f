"""OData JSON (odata.metadata=minimal) of entity records: exact decimals as JSON numbers, ISO dates.

json.dumps cannot write a Decimal as a number without rounding it through a float, and a record of an
Edm.Decimal property must be a number (OData JSON Format §7.1, without IEEE754Compatible). So records are
written here, one flat object at a time.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "null"
        text = format(value, "f")
        return text if text not in ("-0",) else "0"
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return json.dumps(stamp.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    return json.dumps(value, ensure_ascii=False)


def dumps_record(record: dict[str, Any]) -> str:
    """One record (a flat dict of str, int, bool, None, Decimal, date, datetime) as a JSON object."""
    return "{" + ",".join(f"{json.dumps(k)}:{_value(v)}" for k, v in record.items()) + "}"


def dumps_collection(head: dict[str, Any], records: list[dict[str, Any]], tail: dict[str, Any]) -> str:
    """`{**head, "value": [records], **tail}` as JSON text (annotations before and after the value)."""
    parts = [f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in head.items()]
    parts.append('"value":[' + ",".join(dumps_record(r) for r in records) + "]")
    parts.extend(f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in tail.items())
    return "{" + ",".join(parts) + "}"


def dumps_entity(head: dict[str, Any], record: dict[str, Any]) -> str:
    """A single entity: its annotations, then its properties, in one object."""
    inner = dumps_record(record)[1:-1]
    parts = [f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in head.items()]
    if inner:
        parts.append(inner)
    return "{" + ",".join(parts) + "}"
