"""Misconfiguration is reported, never raised at import: on the real host an import error leaves zero functions
(every route 404, `/` 204) with nothing saying why (HOST.md, "Indexing and processes")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared import setting_problems, settings

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "AUTH_MODE": "entra",
    "AUTH_TENANT_ID": "00000000-0000-0000-0000-00000000a11c",
    "AUTH_AUDIENCES": "api://x",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


@pytest.fixture
def env(monkeypatch):
    for name in (
        "AUTH_MODE",
        "AUTH_TENANT_ID",
        "AUTH_AUDIENCES",
        "WEBSITE_INSTANCE_ID",
        "AzureWebJobsStorage",
        "AzureWebJobsStorage__accountName",
        "MAX_ENQUEUE_BYTES",
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT",
        "ENTITY_PARTITION_BUCKETS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def settings_named(problems) -> list[str]:
    return [p.setting for p in problems]


def test_a_good_configuration_has_no_problems(env):
    assert setting_problems.find_problems() == []


@pytest.mark.parametrize(
    ("changes", "setting", "words"),
    [
        ({"AUTH_MODE": "none"}, "AUTH_MODE", "'entra' or 'local'"),
        ({"AUTH_MODE": "local", "WEBSITE_INSTANCE_ID": "abc"}, "AUTH_MODE", "refused in Azure"),
        ({"AUTH_TENANT_ID": ""}, "AUTH_TENANT_ID", "not set"),
        ({"AUTH_TENANT_ID": "contoso"}, "AUTH_TENANT_ID", "tenant GUID"),
        ({"AUTH_AUDIENCES": ""}, "AUTH_AUDIENCES", "not set"),
        ({"AzureWebJobsStorage": ""}, "AzureWebJobsStorage", "storage is not configured"),
        ({"ENTITY_PARTITION_BUCKETS": "many"}, "ENTITY_PARTITION_BUCKETS", "whole number"),
        ({"MAX_ENQUEUE_BYTES": "0"}, "MAX_ENQUEUE_BYTES", "between"),
    ],
)
def test_each_problem_names_its_setting(env, changes, setting, words):
    for name, value in changes.items():
        env.setenv(name, value)
    problems = setting_problems.find_problems()
    assert settings_named(problems) == [setting]
    assert words in problems[0].message
    assert setting in setting_problems.misconfigured_message(problems)


def test_managed_identity_storage_is_configured(env):
    env.delenv("AzureWebJobsStorage")
    env.setenv("AzureWebJobsStorage__accountName", "acct")
    assert setting_problems.find_problems() == []


def test_the_enqueue_limit_defaults_below_the_host_limit(env):
    assert settings.max_enqueue_bytes() < setting_problems.host_body_limit() == 104_857_600
    env.setenv("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", str(300 * 1024 * 1024))
    assert settings.max_enqueue_bytes() == 300 * 1024 * 1024 // 10 * 9
    assert setting_problems.find_warnings() == []


def test_an_enqueue_limit_the_host_hides_is_a_warning(env):
    env.setenv("MAX_ENQUEUE_BYTES", "104857600")
    assert setting_problems.find_problems() == []
    [warning] = setting_problems.find_warnings()
    assert warning.setting == "MAX_ENQUEUE_BYTES" and "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT" in warning.message


def test_importing_the_app_with_a_bad_setting_still_indexes_every_function():
    """A fresh interpreter, as the worker's: the import succeeds and logs the problem."""
    code = (
        "import logging, sys; logging.basicConfig(stream=sys.stderr)\n"
        "import function_app\n"
        "print(len(function_app.app.get_functions()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "AUTH_MODE": "nonsense", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 20
    assert "AUTH_MODE must be 'entra' or 'local'" in result.stderr
