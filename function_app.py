"""The Function App: one FunctionApp that registers the blueprints of each area, and nothing else."""

import azure.functions as func

from shared.api import (
    connector,
    connector_export,
    export_workers,
    manage_config,
    manage_messages,
    odata_actions,
    package_api,
    root,
    scheduler,
    workers,
)
from shared.auth.validator import check_auth_mode

check_auth_mode()  # fail at start, not on the first request, when AUTH_MODE is unsafe or wrong

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

for blueprint in (
    root.bp,
    manage_config.bp,
    manage_messages.bp,
    connector.bp,
    odata_actions.bp,
    workers.bp,
    scheduler.bp,
    connector_export.bp,
    export_workers.bp,
    package_api.bp,
):
    app.register_functions(blueprint)
