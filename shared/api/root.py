"""The two anonymous endpoints: `GET /` (RIS's "Validate connection" probe) and a health check."""

from __future__ import annotations

import azure.functions as func

from shared.api.http import json_response

bp = func.Blueprint()


@bp.route(route="", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def root(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"service": "recurring-integrations", "status": "ok"})


@bp.route(route="api/health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"status": "healthy"})
