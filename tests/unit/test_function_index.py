"""The function index: import function_app, call get_functions() once, and check every route, method,
queue and schedule, as the Python worker will see them. This catches indexing errors before a deploy.

Adding, removing or renaming a function means updating EXPECTED_HTTP below and docs/openapi.yaml
(tests/unit/test_openapi.py checks the spec against the app).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ODATA = "data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."

# function name -> (route template, methods). The route prefix is "" (host.json), so this is the URL path.
EXPECTED_HTTP: dict[str, tuple[str, set[str]]] = {
    # anonymous probes
    "root": ("{root:maxlength(0)?}", {"GET"}),
    "health": ("api/health", {"GET"}),
    # D365 connector
    "enqueue": ("api/connector/enqueue/{activityId}", {"POST"}),
    "job_status": ("api/connector/jobstatus/{activityId}", {"GET"}),
    "connector_dequeue": ("api/connector/dequeue/{activityId}", {"GET"}),
    "connector_download": ("api/connector/download/{activityId}", {"GET"}),
    "connector_ack": ("api/connector/ack/{activityId}", {"POST"}),
    # OData actions
    "get_message_status": (ODATA + "GetMessageStatus", {"POST"}),
    "get_execution_id_by_message_id": (ODATA + "GetExecutionIdByMessageId", {"POST"}),
    # package REST API (PROTOCOL §6)
    "get_azure_write_url": (ODATA + "GetAzureWriteUrl", {"POST"}),
    "import_from_package": (ODATA + "ImportFromPackage", {"POST"}),
    "export_to_package": (ODATA + "ExportToPackage", {"POST"}),
    "get_execution_summary_status": (ODATA + "GetExecutionSummaryStatus", {"POST"}),
    # issue 13: the rest of the DMF actions
    "import_from_package_async": (ODATA + "ImportFromPackageAsync", {"POST"}),
    "export_to_package_async": (ODATA + "ExportToPackageAsync", {"POST"}),
    "export_to_package_preview": (ODATA + "ExportToPackagePreview", {"POST"}),
    "export_to_package_preview_async": (ODATA + "ExportToPackagePreviewAsync", {"POST"}),
    "export_to_package_delta": (ODATA + "ExportToPackageDelta", {"POST"}),
    "export_from_package": (ODATA + "ExportFromPackage", {"POST"}),
    "import_from_dmt_package": (ODATA + "ImportFromDMTPackage", {"POST"}),
    "initialize_data_management": (ODATA + "InitializeDataManagement", {"POST"}),
    "initialize_data_management_async": (ODATA + "InitializeDataManagementAsync", {"POST"}),
    "get_entity_execution_summary_status_list": (ODATA + "GetEntityExecutionSummaryStatusList", {"POST"}),
    "get_import_staging_error_file_url": (ODATA + "GetImportStagingErrorFileUrl", {"POST"}),
    "reset_version_token": (ODATA + "ResetVersionToken", {"POST"}),
    "get_entity_sequence": (ODATA + "GetEntitySequence", {"POST"}),
    # issue 13: the OData service root and the definition group entity sets
    "data_service_document": ("data", {"GET"}),
    "data_service_metadata": ("data/$metadata", {"GET"}),
    "data_groups_list": ("data/DataManagementDefinitionGroups", {"GET"}),
    "data_groups_create": ("data/DataManagementDefinitionGroups", {"POST"}),
    "data_groups_get": ("data/DataManagementDefinitionGroups({key})", {"GET"}),
    "data_groups_patch": ("data/DataManagementDefinitionGroups({key})", {"PATCH"}),
    "data_groups_delete": ("data/DataManagementDefinitionGroups({key})", {"DELETE"}),
    "data_group_details_list": ("data/DataManagementDefinitionGroupDetails", {"GET"}),
    "data_group_details_create": ("data/DataManagementDefinitionGroupDetails", {"POST"}),
    "data_group_details_get": ("data/DataManagementDefinitionGroupDetails({key})", {"GET"}),
    "data_group_details_patch": ("data/DataManagementDefinitionGroupDetails({key})", {"PATCH"}),
    "data_group_details_delete": ("data/DataManagementDefinitionGroupDetails({key})", {"DELETE"}),
    "get_exported_package_url": (ODATA + "GetExportedPackageUrl", {"POST"}),
    "get_execution_errors": (ODATA + "GetExecutionErrors", {"POST"}),
    "generate_import_target_error_keys_file": (ODATA + "GenerateImportTargetErrorKeysFile", {"POST"}),
    "get_import_target_error_keys_file_url": (ODATA + "GetImportTargetErrorKeysFileUrl", {"POST"}),
    "get_execution_summary_page_url": (ODATA + "GetExecutionSummaryPageUrl", {"POST"}),
    # data entities as OData entity sets (shared/api/odata_entity_sets.py)
    "odata_entity_set": (
        r"data/{collection:regex(^(?!\$|DataManagementDefinitionGroup)[A-Za-z_][A-Za-z0-9_]*(\(.*\)|)$)}",
        {"GET"},
    ),
    # management API: configuration
    "list_entities": ("api/manage/entities", {"GET"}),
    "put_entity": ("api/manage/entities/{name}", {"PUT"}),
    "patch_entity": ("api/manage/entities/{name}", {"PATCH"}),
    "get_entity": ("api/manage/entities/{name}", {"GET"}),
    "delete_entity": ("api/manage/entities/{name}", {"DELETE"}),
    "list_formats": ("api/manage/formats", {"GET"}),
    "put_format": ("api/manage/formats/{name}", {"PUT"}),
    "patch_format": ("api/manage/formats/{name}", {"PATCH"}),
    "get_format": ("api/manage/formats/{name}", {"GET"}),
    "delete_format": ("api/manage/formats/{name}", {"DELETE"}),
    "list_transforms": ("api/manage/transforms", {"GET"}),
    "put_transform": ("api/manage/transforms/{name}", {"PUT"}),
    "get_transform": ("api/manage/transforms/{name}", {"GET"}),
    "delete_transform": ("api/manage/transforms/{name}", {"DELETE"}),
    "list_projects": ("api/manage/projects", {"GET"}),
    "put_project": ("api/manage/projects/{name}", {"PUT"}),
    "patch_project": ("api/manage/projects/{name}", {"PATCH"}),
    "get_project": ("api/manage/projects/{name}", {"GET"}),
    "delete_project": ("api/manage/projects/{name}", {"DELETE"}),
    "create_job": ("api/manage/jobs", {"POST"}),
    "list_jobs": ("api/manage/jobs", {"GET"}),
    "put_job": ("api/manage/jobs/{activityId}", {"PUT"}),
    "patch_job": ("api/manage/jobs/{activityId}", {"PATCH"}),
    "get_job": ("api/manage/jobs/{activityId}", {"GET"}),
    "delete_job": ("api/manage/jobs/{activityId}", {"DELETE"}),
    # management API: legal entities and application registrations
    "list_legal_entities": ("api/manage/legalEntities", {"GET"}),
    "put_legal_entity": ("api/manage/legalEntities/{id}", {"PUT"}),
    "get_legal_entity": ("api/manage/legalEntities/{id}", {"GET"}),
    "delete_legal_entity": ("api/manage/legalEntities/{id}", {"DELETE"}),
    "list_applications": ("api/manage/applications", {"GET"}),
    "put_application": ("api/manage/applications/{applicationId}", {"PUT"}),
    "get_application": ("api/manage/applications/{applicationId}", {"GET"}),
    "delete_application": ("api/manage/applications/{applicationId}", {"DELETE"}),
    # management API: operations
    "list_job_messages": ("api/manage/jobs/{activityId}/messages", {"GET"}),
    "list_job_runs": ("api/manage/jobs/{activityId}/runs", {"GET"}),
    "run_job_now": ("api/manage/jobs/{activityId}/run", {"POST"}),
    "get_message": ("api/manage/messages/{messageId}", {"GET"}),
    "get_message_errors": ("api/manage/messages/{messageId}/errors", {"GET"}),
    "reprocess_message": ("api/manage/messages/{messageId}/reprocess", {"POST"}),
    "cancel_message": ("api/manage/messages/{messageId}/cancel", {"POST"}),
    "list_entity_records": ("api/manage/entities/{name}/records", {"GET"}),
    # management API: monitoring (the workspace's Jobs and Monitoring pages)
    "list_job_backlogs": ("api/manage/backlog", {"GET"}),
    "list_job_queueload": ("api/manage/jobs/{activityId}/queueload", {"GET"}),
    # the workspace UI (anonymous static files; its data calls carry bearer tokens)
    "workspace_config": ("workspace/config.json", {"GET"}),
    "workspace_files": ("workspace/{*path}", {"GET"}),
}

# Queue-triggered functions that must exist (others may exist too, on a queue of names.QUEUES).
EXPECTED_QUEUES: dict[str, str] = {
    "import_worker": "import-work",
    "export_worker": "export-work",
}

# Timer functions: name -> schedule placeholder (the setting is in local.settings.example.json and Bicep).
EXPECTED_TIMERS: dict[str, str] = {
    "scheduler_tick": "%SCHEDULER_SCHEDULE%",
    "poison_sweeper": "%POISON_SWEEP_SCHEDULE%",
}

HEAVY_MODULES = ("lxml", "openpyxl", "azure.data.tables", "jwt")


def _text(value) -> str:
    return str(getattr(value, "value", value))


@pytest.fixture(scope="module")
def functions():
    """The app's functions, from get_functions() called once per app instance in this process."""
    with pytest.MonkeyPatch.context() as mp:
        # Importing runs check_auth_mode(): a developer's shell must not make the import fail.
        mp.setenv("AUTH_MODE", "local")
        mp.delenv("WEBSITE_INSTANCE_ID", raising=False)
        import function_app
        from tools.devhost.app_loader import get_functions_once

        return get_functions_once(function_app.app)


def _by_kind(functions, kind: str) -> dict:
    return {f.get_function_name(): f for f in functions if f.get_trigger().get_binding_name() == kind}


def test_function_names_are_unique(functions):
    names = [f.get_function_name() for f in functions]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_http_route_and_method(functions):
    http = _by_kind(functions, "httpTrigger")
    actual = {
        name: (f.get_trigger().route, {_text(m).upper() for m in (f.get_trigger().methods or [])})
        for name, f in http.items()
    }
    missing = sorted(set(EXPECTED_HTTP) - set(actual))
    unexpected = sorted(set(actual) - set(EXPECTED_HTTP))
    assert not missing, f"HTTP functions missing from the app: {missing}"
    assert not unexpected, (
        f"HTTP functions not in EXPECTED_HTTP: {unexpected}; add them here and to docs/openapi.yaml"
    )
    wrong = {name: actual[name] for name in EXPECTED_HTTP if actual[name] != EXPECTED_HTTP[name]}
    assert not wrong, f"route or methods changed: {wrong}"


def test_no_two_functions_share_a_route_and_method(functions):
    seen: dict[tuple[str, str], str] = {}
    for name, f in _by_kind(functions, "httpTrigger").items():
        trigger = f.get_trigger()
        for method in trigger.methods or []:
            key = (trigger.route.lower(), _text(method).upper())
            assert key not in seen, f"{name} and {seen[key]} both serve {key}"
            seen[key] = name


def test_http_functions_are_anonymous_because_bearer_tokens_are_the_boundary(functions):
    levels = {
        name: _text(f.get_trigger().auth_level).lower()
        for name, f in _by_kind(functions, "httpTrigger").items()
    }
    assert levels and all(level == "anonymous" for level in levels.values()), levels


def test_queue_triggers(functions):
    from shared.storage import names

    queues = {
        name: _text(f.get_trigger().queue_name) for name, f in _by_kind(functions, "queueTrigger").items()
    }
    for name, queue in EXPECTED_QUEUES.items():
        assert queues.get(name) == queue, f"{name} should listen on {queue}: {queues}"
    assert names.QUEUE_IMPORT in queues.values() and names.QUEUE_EXPORT in queues.values()
    for name, queue in queues.items():
        assert queue in names.QUEUES, (
            f"{name} listens on {queue!r}, which is not in shared.storage.names.QUEUES"
        )
        assert "%" not in queue, f"{name}: queue names are fixed, not settings"
    for name, f in _by_kind(functions, "queueTrigger").items():
        assert f.get_trigger().connection == names.SETTING_STORAGE, name
    # A queue whose name ends in -poison has no poison queue on the real host: a failing trigger there is
    # never dead-lettered (QueueListenerFactory in the Storage Queues extension; HOST.md). The poison
    # sweeper timer reads those queues instead.
    on_poison = {name: queue for name, queue in queues.items() if queue.endswith(names.POISON_SUFFIX)}
    assert not on_poison, f"queue triggers on -poison queues: {on_poison}"


def test_timers(functions):
    timers = _by_kind(functions, "timerTrigger")
    assert sorted(timers) == sorted(EXPECTED_TIMERS)
    for name, schedule in EXPECTED_TIMERS.items():
        trigger = timers[name].get_trigger()
        assert trigger.schedule == schedule, name
        assert not trigger.run_on_startup, name
    for name, timer in timers.items():
        schedule = timer.get_trigger().schedule
        # A setting (so that it can change without a deploy) or NCRONTAB with seconds.
        assert re.fullmatch(r"%[A-Z0-9_]+%", schedule) or len(schedule.split()) == 6, (name, schedule)


def test_only_known_trigger_kinds(functions):
    kinds = {f.get_trigger().get_binding_name() for f in functions}
    assert kinds <= {"httpTrigger", "queueTrigger", "timerTrigger"}, kinds


def test_example_settings_resolve_the_schedules():
    settings = json.loads((REPO_ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    for schedule in EXPECTED_TIMERS.values():
        fields = settings[schedule.strip("%")].split()
        assert len(fields) == 6, f"{schedule}: NCRONTAB with seconds, six fields"


def test_import_does_not_load_heavy_modules():
    """Cold start: importing the app must not import parsers, the Tables SDK or JWT (they load on first use)."""
    code = (
        "import json, sys\n"
        "import function_app\n"
        f"print(json.dumps([m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WEBSITE_INSTANCE_ID"}
    env["AUTH_MODE"] = "local"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing function_app loaded {loaded}; import them inside the functions"


def test_root_is_served_at_the_base_url_and_nowhere_else(functions):
    """On the real host an empty route is served at the function's name (/root), so RIS's "Validate
    connection" would get the homepage's 204 at `/` (ScriptHost.ValidateHttpFunction). A template of one
    optional segment matches `/` (host PR #1102); maxlength(0) keeps it from matching anything else."""
    from tools.devhost.routes import RouteTemplate, split_path

    [root] = [f for f in functions if f.get_function_name() == "root"]
    template = RouteTemplate(root.get_trigger().route)
    assert root.get_trigger().route.strip(), "an empty route is served at /root on the real host"
    assert template.match(split_path("/")) is not None
    for other in ("/root", "/api", "/x", "/data"):
        assert template.match(split_path(other)) is None, other


def test_no_route_is_shadowed_by_an_earlier_function(functions):
    """The host tries routes in function-name order and the first match wins, with no precedence
    (FunctionMetadataManager orders by name; WebJobsRouteBuilder's RouteCollection keeps that order), so a
    route that an earlier-named function always matches for the same method would never be reached.
    The host also refuses reserved and duplicate routes at start (ScriptHost.ValidateFunction)."""
    from tools.devhost.app_loader import index_functions
    from tools.devhost.http_server import Router
    from tools.devhost.settings import load_host_config

    http = {f.get_function_name().lower() for f in _by_kind(functions, "httpTrigger").values()}
    prefix = load_host_config(REPO_ROOT).route_prefix
    index = index_functions(functions, route_prefix=prefix, root=REPO_ROOT, only=http)
    assert index.errors == {}, f"the host would refuse these functions: {index.errors}"
    assert Router(index.http).shadowed() == []
