"""The crash tests' fault points fire only when armed, count down, and never in Azure or outside local mode."""

from __future__ import annotations

import pytest

from shared.services import fault_points


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.setenv("DEV_FAULT_PLAN_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_MODE", "local")
    monkeypatch.delenv("WEBSITE_INSTANCE_ID", raising=False)
    return tmp_path


def test_an_armed_point_fires_as_often_as_planned(plan):
    (plan / "processing.m1").write_text("raise 2", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="injected fault at processing"):
            fault_points.hit("processing", "m1")
    fault_points.hit("processing", "m1")  # spent
    fault_points.hit("processing", "m2")  # never armed
    fault_points.hit("terminal", "m1")
    assert (plan / "fired.log").read_text(encoding="utf-8").splitlines() == ["processing m1 raise"] * 2


@pytest.mark.parametrize("setting", [("WEBSITE_INSTANCE_ID", "abc"), ("AUTH_MODE", "entra")])
def test_points_never_fire_in_azure_or_outside_local_mode(plan, monkeypatch, setting):
    monkeypatch.setenv(*setting)
    (plan / "processing.m1").write_text("kill 1", encoding="utf-8")
    fault_points.hit("processing", "m1")  # would SIGKILL this test process if it fired
    assert not (plan / "fired.log").exists()
