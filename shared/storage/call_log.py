"""A count of every storage request the app sends, for tests and benchmarks: local mode only, off by default.

With `DEV_STORAGE_CALL_LOG` naming a file (and `AUTH_MODE=local`, outside Azure), the clients that
shared/storage/factory.py builds send their requests through a transport that appends one line per HTTP
request to that file, before it is sent (retries included, as each is a request):

    <pid> <operation> <resource>

for example `4242 table:merge messages`, `4242 blob:put inbound`, `4242 queue:send import-work`. Each line is one
`write` to a file opened with O_APPEND, so the host's processes (split mode, worker processes) can share one file.
Off, the factory builds the SDK's own transport and nothing here is imported: it costs nothing.

Operations (`<service>:<verb>`): table get, query, insert, merge (a PATCH with If-Match), upsert (a PATCH without),
replace (a PUT with If-Match), upsert-replace (a PUT without), delete, batch, create-table; blob get, head, put,
put-block, put-blocklist, delete, list, create-container, other; queue send, receive, delete, update, create,
other. The configuration's version row is `config-version`. Entity tables ("ent" + a name) are grouped as `ent*`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from urllib.parse import parse_qs, unquote, urlparse

SETTING = "DEV_STORAGE_CALL_LOG"


def log_path() -> str | None:
    """The file to append to, or None when counting is off (the setting is unset, or not local mode)."""
    path = os.environ.get(SETTING)
    if not path:
        return None
    from shared import settings

    if settings.auth_mode() != "local" or settings.running_in_azure():
        return None
    return path


def transport_kwargs(service: str, account: str | None, *, options: dict | None = None) -> dict:
    """Client keyword arguments that count `service`'s requests ("blob", "queue" or "table"); {} when off."""
    path = log_path()
    if path is None:
        return {}
    from azure.core.pipeline.transport import RequestsTransport

    class CountingTransport(RequestsTransport):
        # Subclassing the SDK's default transport keeps its connection pool and timeouts; the SDK's
        # sub-clients (get_container_client, get_table_client) wrap this transport, so they count too.
        def send(self, request, **kwargs):
            _append(path, f"{os.getpid()} {operation(service, request, account)}\n")
            return super().send(request, **kwargs)

    return {"transport": CountingTransport(**(options or {}))}


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


_ENTITY_TABLE = re.compile(r"^ent", re.IGNORECASE)
_BATCH_TABLE = re.compile(
    rb"(?:POST|PATCH|PUT|MERGE|DELETE|GET) https?://[^/\s]+/(?:[^/\s]+/)?([A-Za-z][A-Za-z0-9]*)"
)


def _table_name(name: str) -> str:
    from shared.storage import names

    return "ent*" if _ENTITY_TABLE.match(name) and name not in names.TABLES else name


def operation(service: str, request, account: str | None = None) -> str:
    """`<service>:<verb> <resource>` for one azure-core HttpRequest (see the module doc)."""
    url = urlparse(request.url)
    parts = [unquote(p) for p in url.path.split("/") if p]
    if account and parts and parts[0] == account:  # Azurite's path-style URLs name the account first
        parts = parts[1:]
    query = parse_qs(url.query)
    method = request.method.upper()
    headers = {k.lower(): v for k, v in request.headers.items()}
    first = parts[0] if parts else ""
    if service == "table":
        if first == "$batch":
            body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
            found = _BATCH_TABLE.search(body or b"")
            return f"table:batch {_table_name(found.group(1).decode()) if found else '?'}"
        if first == "Tables":
            if method != "POST":
                return f"table:{method.lower()} Tables"
            body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
            found = re.search(rb'"TableName"\s*:\s*"([^"]+)"', body or b"")
            return f"table:create-table {_table_name(found.group(1).decode()) if found else '?'}"
        name = _table_name(first.split("(", 1)[0])
        keyed = "(" in first and "PartitionKey" in first
        if method == "GET":
            if name == "config" and "PartitionKey='meta'" in first and "RowKey='version'" in first:
                # The configuration's freshness check (config_service): at most once per CONFIG_CHECK_SECONDS
                # in an HTTP process, so tests tell it apart from the reads a request always makes.
                return "table:get config-version"
            return f"table:{'get' if keyed else 'query'} {name}"
        if method == "POST":
            return f"table:insert {name}"
        if method in ("PATCH", "MERGE"):
            return f"table:{'merge' if 'if-match' in headers else 'upsert'} {name}"
        if method == "PUT":
            return f"table:{'replace' if 'if-match' in headers else 'upsert-replace'} {name}"
        if method == "DELETE":
            return f"table:delete {name}"
        return f"table:{method.lower()} {name}"
    if service == "blob":
        comp = (query.get("comp") or [""])[0]
        container = query.get("restype") == ["container"] and len(parts) == 1
        if container:
            verb = {"PUT": "create-container", "DELETE": "delete-container"}.get(method, "container")
            return f"blob:{verb} {first}"
        if comp == "list":
            return f"blob:list {first}"
        if method == "PUT":
            verb = {"block": "put-block", "blocklist": "put-blocklist"}.get(comp, comp or "put")
            return f"blob:{verb} {first}"
        verb = {"GET": "get", "HEAD": "head", "DELETE": "delete"}.get(method, "other")
        return f"blob:{verb} {first}"
    if service == "queue":
        is_messages = len(parts) >= 2 and parts[1] == "messages"
        if is_messages:
            verb = {"POST": "send", "GET": "receive", "DELETE": "delete", "PUT": "update"}.get(
                method, "other"
            )
        else:
            verb = {"PUT": "create", "DELETE": "delete-queue"}.get(method, "other")
        return f"queue:{verb} {first}"
    return f"{service}:{method.lower()} {first}"


# Reading the log (tests, benchmarks) -----------------------------------------------------------------
def read(path: str, offset: int = 0, *, exclude_pid: int | None = None) -> tuple[Counter, int]:
    """The operations logged since byte `offset` (a Counter of "<service>:<verb> <resource>"), and the new
    offset. `exclude_pid`: leave out one process's lines (a test's own). A missing file counts nothing."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            data = log.read()
    except FileNotFoundError:
        return Counter(), offset
    end = data.rfind(b"\n") + 1  # a line being written is counted next time
    counts: Counter = Counter()
    for line in data[:end].decode().splitlines():
        pid, _, op = line.partition(" ")
        if exclude_pid is not None and pid == str(exclude_pid):
            continue
        counts[op] += 1
    return counts, offset + end


def describe_change(expected: dict, actual: dict) -> str:
    """A table of the operations whose counts differ: `operation: old -> new`, then the totals."""
    lines = [
        f"  {op}: {expected.get(op, 0)} -> {actual.get(op, 0)}"
        for op in sorted(set(expected) | set(actual))
        if expected.get(op, 0) != actual.get(op, 0)
    ]
    total = f"  total: {sum(expected.values())} -> {sum(actual.values())}"
    return "storage calls changed (old -> new):\n" + "\n".join([*lines, total])
