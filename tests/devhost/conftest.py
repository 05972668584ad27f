"""Fixtures for the local host tests: one in-memory Azurite per session and one sample host per module."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devhost.hostproc import SAMPLE_APP, HostProcess, clean_env
from tools.azurite import ACCOUNT_KEY, AzuriteProcess, start_azurite

# local.settings.json points storage at a closed port: queue tests pass only if the environment wins.
UNREACHABLE_STORAGE = (
    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
    "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
)


@pytest.fixture(scope="session")
def devhost_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteProcess]:
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    with start_azurite(in_memory=True, log_path=log) as azurite:
        yield azurite


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample app with a local.settings.json (which git ignores, so it is written here)."""
    root = tmp_path_factory.mktemp("sample") / "app"
    shutil.copytree(SAMPLE_APP, root, ignore=shutil.ignore_patterns("__pycache__", "local.settings.json"))
    settings = {
        "IsEncrypted": False,
        "Values": {"SAMPLE_A": "local", "SAMPLE_B": "local", "AzureWebJobsStorage": UNREACHABLE_STORAGE},
    }
    (root / "local.settings.json").write_text(json.dumps(settings), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("output")


@pytest.fixture(scope="module")
def sample_host(
    devhost_azurite: AzuriteProcess,
    sample_root: Path,
    output_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HostProcess]:
    env = clean_env(
        AzureWebJobsStorage=devhost_azurite.connection_string,
        SAMPLE_A="env",
        SAMPLE_OUTPUT_DIR=str(output_dir),
    )
    host = HostProcess(sample_root, env, tmp_path_factory.mktemp("logs"), "--app", "function_app")
    try:
        host.wait_started()
        yield host
    finally:
        host.stop()
