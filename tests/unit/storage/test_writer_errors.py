"""What crosses back from a writer process (shared/storage/writer_processes.py): an error described in the
writer is rebuilt in the app's process with its class, message, HTTP status and error code, so the retry and
terminal-status decisions (shared/storage/retry.is_transient) see what the writer saw; and the setting that
sizes the writers."""

from __future__ import annotations

import pickle

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared import settings
from shared.storage.retry import describe, is_transient
from shared.storage.writer_processes import error_info, rebuild_error


@pytest.fixture
def fresh_cpu_count():
    """The CPU count is read once per process (settings.usable_cpus): read it again around the test."""
    settings.usable_cpus.cache_clear()
    yield
    settings.usable_cpus.cache_clear()


def round_trip(error: BaseException) -> BaseException:
    return rebuild_error(pickle.loads(pickle.dumps(error_info(error))))


def test_an_http_error_keeps_its_class_status_and_code():
    original = HttpResponseError(message="The server is busy.")
    original.status_code, original.error_code = 503, "ServerBusy"
    rebuilt = round_trip(original)
    assert type(rebuilt) is HttpResponseError
    assert (rebuilt.status_code, rebuilt.error_code, str(rebuilt)) == (
        503,
        "ServerBusy",
        "The server is busy.",
    )
    assert is_transient(rebuilt)
    assert describe(rebuilt) == describe(original)


def test_a_subclass_of_http_error_stays_that_subclass_and_stays_permanent():
    original = ResourceExistsError(message="The specified entity already exists.")
    original.status_code = 409
    rebuilt = round_trip(original)
    assert type(rebuilt) is ResourceExistsError and rebuilt.status_code == 409
    assert not is_transient(rebuilt)


@pytest.mark.parametrize("cls", [ServiceRequestError, ServiceResponseError])
def test_connection_errors_stay_transient(cls):
    rebuilt = round_trip(
        cls("('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))")
    )
    assert type(rebuilt) is cls and is_transient(rebuilt)
    assert "Connection reset by peer" in str(rebuilt)


def test_os_errors_keep_their_class():
    rebuilt = round_trip(ConnectionResetError("reset"))
    assert type(rebuilt) is ConnectionResetError and is_transient(rebuilt)


def test_an_azure_error_of_another_package_becomes_its_nearest_azure_core_class():
    from azure.identity import CredentialUnavailableError

    rebuilt = round_trip(CredentialUnavailableError("no managed identity endpoint"))
    assert type(rebuilt) is ClientAuthenticationError and str(rebuilt) == "no managed identity endpoint"
    assert not is_transient(rebuilt)


def test_anything_else_becomes_its_nearest_builtin_class():
    class Odd(ValueError):
        pass

    rebuilt = round_trip(Odd("strange"))
    assert type(rebuilt) is RuntimeError and str(rebuilt) == "ValueError: strange"
    assert not is_transient(rebuilt)


def test_the_writer_count_setting(monkeypatch):
    monkeypatch.setenv("IMPORT_WRITER_PROCESSES", "3")
    assert settings.import_writer_processes() == 3
    monkeypatch.setenv("IMPORT_WRITER_PROCESSES", "0")
    assert settings.import_writer_processes() == 0
    monkeypatch.setenv("IMPORT_WRITER_PROCESSES", "99")
    assert settings.import_writer_processes() == 16
    monkeypatch.setenv("IMPORT_WRITER_PROCESSES", "two")
    assert settings.import_writer_processes() == 0  # written in the app's process, with a warning


@pytest.mark.parametrize(("cpus", "expected"), [(1, 0), (2, 2), (3, 3), (8, 4)])
def test_the_default_writer_count_follows_the_cpus(monkeypatch, fresh_cpu_count, cpus, expected):
    monkeypatch.delenv("IMPORT_WRITER_PROCESSES", raising=False)
    monkeypatch.setattr(settings.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.setattr(settings, "cgroup_cpu_quota", lambda: None)
    assert settings.import_writer_processes() == expected


def test_a_containers_cpu_quota_caps_the_default(monkeypatch, fresh_cpu_count):
    monkeypatch.delenv("IMPORT_WRITER_PROCESSES", raising=False)
    monkeypatch.setattr(settings.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(settings, "cgroup_cpu_quota", lambda: 1)
    assert settings.import_writer_processes() == 0  # one CPU's worth: written in the app's process


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
        ({}, None),
    ],
)
def test_the_cgroup_cpu_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert settings.cgroup_cpu_quota(str(tmp_path)) == expected
