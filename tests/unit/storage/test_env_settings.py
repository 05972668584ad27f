"""The storage clients read proxy and netrc settings from the environment on each request only when one is set,
and take a CA bundle once (shared/storage/factory.py transport_options): otherwise `requests` would scan the
environment on every storage call."""

from __future__ import annotations

import os

import pytest

from shared.storage.factory import StorageClients, transport_options

CONN = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:2/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:3/devstoreaccount1;"
)
ENV_KEYS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "netrc",
    "requests_ca_bundle",
    "curl_ca_bundle",
)


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY", "NO_PROXY", "NETRC"])
def test_a_proxy_or_netrc_setting_keeps_the_sdk_default(name, tmp_path):
    assert transport_options({name: "x", "PATH": "/bin"}, home=str(tmp_path)) is None


def test_a_netrc_file_keeps_the_sdk_default(tmp_path):
    (tmp_path / ".netrc").write_text("machine example.com login a password b\n")
    assert transport_options({"PATH": "/bin"}, home=str(tmp_path)) is None


def test_without_settings_the_environment_is_not_read(tmp_path):
    assert transport_options({"HTTPS_PROXY": "", "PATH": "/bin"}, home=str(tmp_path)) == {
        "use_env_settings": False
    }


def test_a_ca_bundle_is_passed_once_as_requests_would_pick_it(tmp_path):
    both = {"REQUESTS_CA_BUNDLE": "/a.pem", "CURL_CA_BUNDLE": "/b.pem"}
    assert transport_options(both, home=str(tmp_path))["connection_verify"] == "/a.pem"
    assert (
        transport_options({"CURL_CA_BUNDLE": "/b.pem"}, home=str(tmp_path))["connection_verify"] == "/b.pem"
    )


def _clean(monkeypatch, tmp_path) -> None:
    for key in list(os.environ):
        if key.lower() in ENV_KEYS:
            monkeypatch.delenv(key)
    monkeypatch.delenv("DEV_STORAGE_CALL_LOG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def test_without_settings_the_clients_do_not_trust_the_environment(monkeypatch, tmp_path):
    _clean(monkeypatch, tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/a.pem")
    clients = StorageClients.from_connection_string(CONN)
    for service in (clients.blob_service, clients.queue_service, clients.table_service):
        transport = service._client._client._pipeline._transport
        transport.open()
        assert transport.session.trust_env is False
        assert transport.connection_config.verify == "/a.pem"


def test_with_a_proxy_the_clients_trust_the_environment(monkeypatch, tmp_path):
    _clean(monkeypatch, tmp_path)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    clients = StorageClients.from_connection_string(CONN)
    transport = clients.table_service._client._client._pipeline._transport
    transport.open()
    assert transport.session.trust_env is True


# The settings a writer process builds the same clients from (shared/storage/writer_processes.py).
def test_process_settings_of_a_connection_string_rebuild_the_same_clients(monkeypatch):
    monkeypatch.delenv("DEV_STORAGE_CALL_LOG", raising=False)
    settings = StorageClients.from_connection_string(CONN).process_settings()
    assert settings["AzureWebJobsStorage"] == CONN
    again = StorageClients.from_settings(
        {k: v for k, v in settings.items() if k.startswith("AzureWebJobsStorage")}
    )
    assert again.connection_string == CONN


def test_process_settings_of_managed_identity_carry_the_account_and_identity_not_a_secret(monkeypatch):
    monkeypatch.delenv("DEV_STORAGE_CALL_LOG", raising=False)
    env = {
        "AzureWebJobsStorage__accountName": "contoso",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
        "UNRELATED": "x",
    }
    settings = StorageClients.from_settings(env).process_settings()
    assert {k: v for k, v in settings.items() if k.startswith("AzureWebJobsStorage")} == {
        k: v for k, v in env.items() if k.startswith("AzureWebJobsStorage")
    }
    again = StorageClients.from_settings(settings)
    assert again.uses_identity and again.table_service.url.startswith(
        "https://contoso.table.core.windows.net"
    )


def test_clients_around_a_credential_object_cannot_be_rebuilt_elsewhere():
    clients = StorageClients(
        blob_url="https://a", queue_url="https://b", table_url="https://c", credential=object()
    )
    assert clients.process_settings() is None
