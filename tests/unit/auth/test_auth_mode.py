"""AUTH_MODE handling: local mode is refused in Azure, unknown modes are refused."""

import pytest

from shared.auth.validator import check_auth_mode


def test_local_mode_refuses_to_start_in_azure(monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "local")
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "abc123")
    with pytest.raises(RuntimeError, match="refused in Azure"):
        check_auth_mode()


def test_local_mode_is_fine_outside_azure(monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "local")
    monkeypatch.delenv("WEBSITE_INSTANCE_ID", raising=False)
    check_auth_mode()


def test_unknown_mode_is_refused(monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "none")
    with pytest.raises(RuntimeError, match="AUTH_MODE"):
        check_auth_mode()
