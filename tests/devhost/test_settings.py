"""Settings layering, host.json defaults, placeholders, timer schedules and message decoding."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tools.devhost.queue_runner import MessageDecodeError, decode_content
from tools.devhost.settings import (
    SettingsError,
    apply_settings,
    load_host_config,
    parse_timespan,
    resolve_placeholders,
)
from tools.devhost.timer_runner import Schedule, ScheduleError


def write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_environment_then_local_then_example(tmp_path: Path) -> None:
    write(
        tmp_path / "local.settings.example.json", {"Values": {"A": "example", "B": "example", "C": "example"}}
    )
    write(tmp_path / "local.settings.json", {"Values": {"A": "local", "B": "local", "N": 5, "T": True}})
    env = {"A": "env"}
    applied, overridden = apply_settings(tmp_path, env)
    assert env == {"A": "env", "B": "local", "C": "example", "N": "5", "T": "true"}
    assert overridden == {"A": "env"}
    assert "A" not in applied


def test_no_settings_files_is_fine(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    apply_settings(tmp_path, env)
    assert env == {}


def test_encrypted_settings_are_rejected(tmp_path: Path) -> None:
    write(tmp_path / "local.settings.json", {"IsEncrypted": True, "Values": {}})
    with pytest.raises(SettingsError, match="encrypted"):
        apply_settings(tmp_path, {})


def test_host_json_defaults_and_values(tmp_path: Path) -> None:
    defaults = load_host_config(tmp_path)
    assert defaults.route_prefix == "api"
    assert defaults.queues.batch_size == 16
    assert defaults.queues.new_batch_threshold == 8
    assert defaults.queues.max_dequeue_count == 5
    assert defaults.queues.message_encoding == "base64"
    assert defaults.queues.local_polling_interval == 1.0

    write(
        tmp_path / "host.json",
        {
            "version": "2.0",
            "extensions": {
                "http": {"routePrefix": ""},
                "queues": {
                    "BatchSize": 4,
                    "visibilityTimeout": "00:00:30",
                    "maxPollingInterval": "00:00:00.5",
                },
            },
        },
    )
    config = load_host_config(tmp_path)
    assert config.route_prefix == ""
    assert config.queues.batch_size == 4
    assert config.queues.new_batch_threshold == 2
    assert config.queues.visibility_timeout == 30
    assert config.queues.local_polling_interval == 0.5


def test_timespans() -> None:
    assert parse_timespan("00:00:02") == 2
    assert parse_timespan("1.02:03:04.5") == 86400 + 2 * 3600 + 3 * 60 + 4.5
    assert parse_timespan(2000, int_unit=0.001) == 2
    with pytest.raises(SettingsError):
        parse_timespan("soon")


def test_placeholders() -> None:
    assert resolve_placeholders("%A%-%B%", {"A": "1", "B": "2"}) == "1-2"
    with pytest.raises(SettingsError, match="MISSING"):
        resolve_placeholders("%MISSING%", {})


def test_ncrontab_schedules() -> None:
    start = dt.datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=dt.UTC)
    assert Schedule("*/1 * * * * *").next_after(start) == start.replace(second=1, microsecond=0)
    assert Schedule("0 */5 * * * *").next_after(start) == start.replace(minute=5, microsecond=0)
    assert Schedule("30 0 9 * * Mon-Fri").next_after(start) == dt.datetime(
        2024, 1, 1, 9, 0, 30, tzinfo=dt.UTC
    )
    assert Schedule("00:00:10").next_after(start) == start + dt.timedelta(seconds=10)
    for bad in ("* * *", "99 * * * * *"):
        with pytest.raises(ScheduleError):
            Schedule(bad)


def test_message_decoding() -> None:
    assert decode_content("aGk=", "base64") == b"hi"
    assert decode_content("hi", "none") == b"hi"
    assert decode_content(None, "base64") == b""
    with pytest.raises(MessageDecodeError):
        decode_content("not base64!", "base64")


def test_app_settings_override_host_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`AzureFunctionsJobHost__path__to__key` app settings override host.json values, keys case-insensitive
    (host.json reference, "Override host.json values"; the host reads the environment with that prefix into
    its `AzureFunctionsJobHost` configuration section)."""
    from tools.devhost.settings import load_host_config

    write(
        tmp_path / "host.json",
        {"version": "2.0", "extensions": {"queues": {"maxDequeueCount": 5, "batchSize": 8}}},
    )
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__queues__maxDequeueCount", "2")
    monkeypatch.setenv("AZUREFUNCTIONSJOBHOST__Extensions__Queues__VisibilityTimeout", "00:00:03")
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__http__routePrefix", "x")
    config = load_host_config(tmp_path)
    assert config.queues.max_dequeue_count == 2
    assert config.queues.visibility_timeout == 3
    assert config.queues.batch_size == 8
    assert config.route_prefix == "x"
