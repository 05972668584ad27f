"""The OData actions of /data/DataManagementDefinitionGroups (PROTOCOL §4 and §6), flat `value` envelopes.

Every action is `auth="partner"`: a caller on no job's policy is refused before its body is read, and a
body is at most json_body.ACTION_BODY_BYTES, with strings of at most ACTION_STRING_CHARS (issue 17)."""

from __future__ import annotations

import azure.functions as func

from shared.api.http import clean_id, endpoint, json_response, parse_guid, public_base_url, read_json
from shared.api.json_body import ACTION_STRING_CHARS
from shared.errors import ValidationError

bp = func.Blueprint()

ODATA_JSON = "application/json; odata.metadata=minimal"
ACTION_ROUTE = "data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."


def odata_value(req, value, *, edm: str = "Edm.String") -> func.HttpResponse:
    import json

    body = {"@odata.context": f"{public_base_url(req)}/data/$metadata#{edm}", "value": value}
    return func.HttpResponse(json.dumps(body), status_code=200, headers={"Content-Type": ODATA_JSON})


def _body_id(req, *keys: str) -> str:
    body = read_json(req, lenient_quotes=True, max_string_chars=ACTION_STRING_CHARS)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    lowered = {k.lower(): v for k, v in body.items()}
    for key in keys:
        if key.lower() in lowered and lowered[key.lower()] not in (None, ""):
            return parse_guid(clean_id(str(lowered[key.lower()])), key)
    raise ValidationError(f"the body needs {keys[0]}", code="MissingParameter")


@bp.route(route=ACTION_ROUTE + "GetMessageStatus", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="partner")
def get_message_status(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.message_status import get_message_for_caller

    msg = get_message_for_caller(_body_id(req, "messageId", "_messageId"), principal)
    return odata_value(req, msg.get("Status"))


@bp.route(
    route=ACTION_ROUTE + "GetExecutionIdByMessageId", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS
)
@endpoint(auth="partner")
def get_execution_id_by_message_id(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.message_status import get_message_for_caller

    msg = get_message_for_caller(_body_id(req, "_messageId", "messageId"), principal)
    return odata_value(req, msg.get("RunId") or "")


__all__ = ["bp", "json_response"]
