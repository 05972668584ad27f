"""The Function App: one FunctionApp that registers the blueprints of each area, and nothing else."""

import azure.functions as func

from shared.api import (
    connector,
    connector_export,
    dmf_actions,
    export_workers,
    manage_access,
    manage_config,
    manage_messages,
    manage_monitoring,
    odata_actions,
    odata_entity_sets,
    odata_groups,
    odata_service,
    package_api,
    poison_sweep,
    root,
    scheduler,
    workers,
    workspace,
)
from shared.setting_problems import startup_problems

# Never raise here: on the real host an import error leaves zero functions and every route 404s, with
# nothing saying why. Problems are logged now, and the HTTP endpoints answer 503 naming the setting.
startup_problems()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

for blueprint in (
    root.bp,
    manage_config.bp,
    manage_access.bp,
    manage_messages.bp,
    connector.bp,
    odata_actions.bp,
    workers.bp,
    scheduler.bp,
    connector_export.bp,
    export_workers.bp,
    package_api.bp,
    poison_sweep.bp,
    manage_monitoring.bp,
    workspace.bp,
    odata_service.bp,
    odata_groups.bp,
    dmf_actions.bp,
    odata_entity_sets.bp,
):
    app.register_functions(blueprint)
