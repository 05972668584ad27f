"""The one place that builds Azure SDK clients: a connection string locally, managed identity in Azure.

It reads the same settings as the Functions host: `AzureWebJobsStorage` (a connection string) or
`AzureWebJobsStorage__accountName` / `__blobServiceUri` / `__queueServiceUri` / `__tableServiceUri`
with `__credential=managedidentity` and `__clientId`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from functools import cached_property
from typing import Any

from shared.storage import names

_lock = threading.Lock()
_clients: dict[tuple, StorageClients] = {}


class StorageClients:
    """Service clients plus idempotent, once-per-process creation of containers, queues and tables."""

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        blob_url: str | None = None,
        queue_url: str | None = None,
        table_url: str | None = None,
        credential: Any = None,
    ) -> None:
        self.connection_string = connection_string
        self._urls = (blob_url, queue_url, table_url)
        self.credential = credential
        self._ensured: set[tuple[str, str]] = set()
        self._ensure_lock = threading.Lock()
        # The settings these clients were built from, which another process can build them from again.
        self._settings: dict[str, str] | None = (
            {names.SETTING_STORAGE: connection_string} if connection_string else None
        )

    @classmethod
    def from_connection_string(cls, connection_string: str) -> StorageClients:
        return cls(connection_string=connection_string)

    @classmethod
    def from_settings(
        cls, environ: dict[str, str] | None = None, prefix: str = names.SETTING_STORAGE
    ) -> StorageClients:
        env = os.environ if environ is None else environ
        conn = env.get(prefix)
        if conn:
            return cls.from_connection_string(conn)
        account = env.get(f"{prefix}__accountName")
        blob = env.get(f"{prefix}__blobServiceUri") or (
            account and f"https://{account}.blob.core.windows.net"
        )
        queue = env.get(f"{prefix}__queueServiceUri") or (
            account and f"https://{account}.queue.core.windows.net"
        )
        table = env.get(f"{prefix}__tableServiceUri") or (
            account and f"https://{account}.table.core.windows.net"
        )
        if not (blob and queue and table):
            raise RuntimeError(
                f"storage is not configured: set {prefix} (a connection string) or {prefix}__accountName"
            )
        clients = cls(blob_url=blob, queue_url=queue, table_url=table, credential=_credential(env, prefix))
        clients._settings = {
            f"{names.SETTING_STORAGE}__{key[len(prefix) + 2 :]}": value
            for key, value in env.items()
            if key.startswith(f"{prefix}__") and value
        }
        return clients

    def process_settings(self) -> dict[str, str] | None:
        """Settings from which another process builds the same clients (`from_settings`), with the call log's
        settings (shared/storage/call_log.py) when it is on; None for clients built around a credential object,
        which cannot be passed on. Used by the import's writer processes (shared/storage/writer_processes.py)."""
        if self._settings is None:
            return None
        out = dict(self._settings)
        for name in ("DEV_STORAGE_CALL_LOG", "AUTH_MODE", "WEBSITE_INSTANCE_ID"):
            if os.environ.get(name):
                out[name] = os.environ[name]
        return out

    # Service clients -------------------------------------------------------------------------
    @cached_property
    def blob_service(self):
        from azure.storage.blob import BlobServiceClient

        counting = self._transport("blob")
        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string, **counting)
        return BlobServiceClient(self._urls[0], credential=self.credential, **counting)

    @cached_property
    def queue_service(self):
        from azure.storage.queue import QueueServiceClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        # The Functions host reads queue messages as base64 (host.json messageEncoding).
        policies = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
            **self._transport("queue"),
        }
        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string, **policies)
        return QueueServiceClient(self._urls[1], credential=self.credential, **policies)

    @cached_property
    def table_service(self):
        from azure.data.tables import TableServiceClient

        counting = self._transport("table")
        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string, **counting)
        return TableServiceClient(self._urls[2], credential=self.credential, **counting)

    def _transport(self, service: str) -> dict:
        """The clients' transport: the SDK's, told not to read the environment on every request when nothing
        there needs it (transport_options); in tests and benches one that also logs each request
        (shared/storage/call_log.py, never in Azure)."""
        options = transport_options()
        if os.environ.get("DEV_STORAGE_CALL_LOG"):
            from shared.storage import call_log

            account = None
            for part in (self.connection_string or "").split(";"):
                key, _, value = part.partition("=")
                if key.strip().lower() == "accountname":
                    account = value.strip()
            counting = call_log.transport_kwargs(service, account, options=options or {})
            if counting:
                return counting
        if options is None:
            return {}
        from azure.core.pipeline.transport import RequestsTransport

        return {"transport": RequestsTransport(**options)}

    # Resources, created on first use --------------------------------------------------------
    def _ensure(self, kind: str, name: str, create) -> None:
        if (kind, name) in self._ensured:
            return
        from azure.core.exceptions import ResourceExistsError

        with self._ensure_lock:
            if (kind, name) in self._ensured:
                return
            with contextlib.suppress(ResourceExistsError):
                create()
            self._ensured.add((kind, name))

    def container(self, name: str):
        client = self.blob_service.get_container_client(name)
        self._ensure("container", name, client.create_container)
        return client

    def queue(self, name: str):
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

        # The Functions host reads queue messages as base64 (host.json messageEncoding); the service
        # client does not pass its policies on to queue clients, so they are set here.
        client = self.queue_service.get_queue_client(
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
        self._ensure("queue", name, client.create_queue)
        return client

    def table(self, name: str):
        client = self.table_service.get_table_client(name)
        self._ensure("table", name, client.create_table)
        return client

    def forget_table(self, name: str) -> None:
        """After deleting a table, let the next use create it again."""
        self._ensured.discard(("table", name))

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


# What `requests` reads from the environment on every request when its session trusts it (trust_env): proxies
# (and the hosts that bypass them) and a netrc file's credentials, which need it; and a CA bundle, read here once.
_PROXY_SETTINGS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "netrc")


def transport_options(
    environ: dict[str, str] | None = None, home: str | None = None
) -> dict[str, Any] | None:
    """Options of the storage clients' RequestsTransport that keep what `requests` would read from the
    environment without reading it on each request, or None when a proxy or netrc setting needs that (then the
    SDK's default transport is used). Reading it costs about 1 ms of CPU per storage call, a third of the SDK's
    own (it scans every environment variable for proxies; issue 14). The CA bundle (REQUESTS_CA_BUNDLE, else
    CURL_CA_BUNDLE, as `requests` picks it) is passed as the transport's `connection_verify`. The environment is
    read once, when the clients are built."""
    env = os.environ if environ is None else environ
    if any(key.lower() in _PROXY_SETTINGS and value for key, value in env.items()):
        return None
    home = home if home is not None else os.path.expanduser("~")
    if any(os.path.exists(os.path.join(home, name)) for name in (".netrc", "_netrc")):
        return None
    options: dict[str, Any] = {"use_env_settings": False}
    bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
    if bundle:
        options["connection_verify"] = bundle
    return options


def _credential(env, prefix: str):
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = env.get(f"{prefix}__clientId")
    if (env.get(f"{prefix}__credential") or "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return (
        DefaultAzureCredential(managed_identity_client_id=client_id)
        if client_id
        else DefaultAzureCredential()
    )


def get_clients() -> StorageClients:
    """The process-wide clients for the current settings (re-read when the settings change, as in tests)."""
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(names.SETTING_STORAGE)))
    with _lock:
        clients = _clients.get(key)
        if clients is None:
            clients = StorageClients.from_settings()
            _clients[key] = clients
        return clients
