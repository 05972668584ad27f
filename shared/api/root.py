"""The two anonymous endpoints: `GET /` (RIS's "Validate connection" probe) and a health check."""

from __future__ import annotations

import azure.functions as func

from shared.api.http import json_response

bp = func.Blueprint()

# An empty route is served at the function's name (/root) by the real host (ScriptHost.ValidateHttpFunction);
# a template whose only segment is optional matches `/` (host PR #1102). maxlength(0) keeps it from matching
# any other one-segment path, so it shadows nothing.
ROOT_ROUTE = "{root:maxlength(0)?}"


@bp.route(route=ROOT_ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def root(req: func.HttpRequest) -> func.HttpResponse:
    from shared.setting_problems import misconfigured_message, startup_problems

    problems = startup_problems()
    if problems:
        body = {"error": {"code": "Misconfigured", "message": misconfigured_message(problems)}}
        return json_response(body, 503)
    return json_response({"service": "recurring-integrations", "status": "ok"})


@bp.route(route="api/health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 {"status":"healthy"} or 503 {"status":"unhealthy","problems":[{"setting","message"}]}; warnings
    (settings that work but defeat a purpose) are listed either way. Setting names are not secrets."""
    from shared.setting_problems import find_warnings, startup_problems

    problems = startup_problems()
    body: dict = {"status": "unhealthy" if problems else "healthy"}
    if problems:
        body["problems"] = [p.to_json() for p in problems]
    warnings = find_warnings()
    if warnings:
        body["warnings"] = [w.to_json() for w in warnings]
    return json_response(body, 503 if problems else 200)
