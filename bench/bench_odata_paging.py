"""Memory of reading a data entity set page by page (GET /data/{collection}, docs/odata.md): it stays flat.

Writes N records (default 20,000) of one legal entity into Azurite, then reads them all through the local host,
following `@odata.nextLink` with `Prefer: odata.maxpagesize=1000`, and reports:
- the host's resident memory (VmRSS of the local host process and its children) before and after, and its
  peak (VmHWM), next to the size of the JSON it sent;
- in this process, tracemalloc's peak while one page is read by the service (shared/services/entity_sets.py),
  for the first page, a page in the middle and the last, and the same for $count=true (a full streaming count).
Figures are printed, never asserted. Run: .venv/bin/python bench/bench_odata_paging.py [--records 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import AUDIENCE, NEVER, TENANT  # noqa: E402

ENTITY = {
    "publicCollectionName": "BenchRows",
    "keys": ["CODE"],
    "fields": [
        {"name": "CODE"},
        {"name": "NAME"},
        {"name": "DESCRIPTION"},
        {"name": "AMOUNT", "type": "decimal"},
        {"name": "QTY", "type": "int"},
    ],
}


def tree_kib(pid: int, field: str) -> int:
    """`field` (VmRSS, VmHWM) of a process and its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def write_records(count: int) -> None:
    from shared.services.registry import config_service, entity_repo

    entity = config_service().get_entity("BenchRows")
    now = datetime.now(UTC)
    for start in range(0, count, 2000):
        rows = [
            entity_repo().encode(
                entity,
                {
                    "CODE": f"R{n:07d}",
                    "NAME": f"Record {n}",
                    "DESCRIPTION": "x" * 120,
                    "AMOUNT": Decimal(n) / 4,
                    "QTY": n,
                },
                "usmf",
                now,
            )
            for n in range(start, min(start + 2000, count))
        ]
        assert not entity_repo().upsert_rows(entity, rows).failed


def read_over_http(base: str, headers: dict, query: str) -> tuple[int, int, int, float]:
    """(records, pages, bytes) of every page, following nextLinks, and the time taken."""
    import requests

    started = time.perf_counter()
    url, records, pages, size = f"{base}/data/BenchRows?{query}", 0, 0, 0
    while url:
        resp = requests.get(url, headers={**headers, "Prefer": "odata.maxpagesize=1000"}, timeout=120)
        resp.raise_for_status()
        body = resp.json()
        records += len(body["value"])
        pages += 1
        size += len(resp.content)
        url = body.get("@odata.nextLink")
    return records, pages, size, time.perf_counter() - started


def traced_pages(principal, query: dict[str, str], pages: int) -> list[tuple[int, int]]:
    """(page number, tracemalloc peak in KiB) of the first, middle and last of `pages` pages read in this
    process (tracing every page would take long: it slows the SDK's parsing tenfold)."""
    from shared.services.entity_sets import read_page

    peaks, params, number, traced = [], dict(query), 0, {0, pages // 2, pages - 1}
    while True:
        if number in traced:
            tracemalloc.start()
        page = read_page(principal, "BenchRows", params, page_size=1000)
        if number in traced:
            peaks.append((number, tracemalloc.get_traced_memory()[1] // 1024))
            tracemalloc.stop()
        number += 1
        if not page.next_state:
            return peaks
        params = {**query, "$skiptoken": page.next_state}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()

    from shared.auth.keys import ensure_local_keys
    from shared.auth.principal import Principal
    from tests.devhost.hostproc import HostProcess, clean_env
    from tools.azurite import start_azurite
    from tools.devtoken import make_token

    with tempfile.TemporaryDirectory() as tmp, start_azurite(in_memory=True) as azurite:
        work = Path(tmp)
        keys = work / "keys"
        ensure_local_keys(keys)
        settings = {
            "AzureWebJobsStorage": azurite.connection_string,
            "AUTH_MODE": "local",
            "AUTH_TENANT_ID": TENANT,
            "AUTH_AUDIENCES": AUDIENCE,
            "AUTH_LOCAL_KEY_DIR": str(keys),
            "SCHEDULER_SCHEDULE": NEVER,
            "POISON_SWEEP_SCHEDULE": NEVER,
        }
        os.environ.update(settings)
        host = HostProcess(REPO, clean_env(**settings), work / "logs", name="bench-odata")
        try:
            base = host.wait_started(60)
            admin = {
                "Authorization": "Bearer "
                + make_token(
                    str(uuid.uuid4()),
                    key_dir=keys,
                    tenant_id=TENANT,
                    audience=AUDIENCE,
                    admin=True,
                    minutes=240,
                )
            }
            import requests

            requests.put(
                f"{base}/api/manage/entities/BenchRows", json=ENTITY, headers=admin, timeout=60
            ).raise_for_status()
            started = time.perf_counter()
            write_records(args.records)
            print(f"wrote {args.records:,} records in {time.perf_counter() - started:.1f} s")
            query = "$filter=" + urllib.parse.quote("dataAreaId eq 'usmf'")
            read_over_http(base, admin, query + "&$top=1")  # warm: imports, the signing key, caches
            pid = host.proc.pid
            before = tree_kib(pid, "VmRSS")
            records, pages, size, took = read_over_http(base, admin, query)
            after, peak = tree_kib(pid, "VmRSS"), tree_kib(pid, "VmHWM")
            print(
                f"HTTP: {records:,} records in {pages} pages, {size / 1e6:.1f} MB of JSON, {took:.1f} s; "
                f"host RSS {before / 1024:.0f} MiB before, {after / 1024:.0f} MiB after, peak {peak / 1024:.0f} MiB"
            )
            records, pages, size, took = read_over_http(base, admin, query + "&$count=true")
            print(
                f"HTTP with $count=true: {records:,} records, {pages} pages, {took:.1f} s; "
                f"host RSS {tree_kib(pid, 'VmRSS') / 1024:.0f} MiB, peak {tree_kib(pid, 'VmHWM') / 1024:.0f} MiB"
            )
        finally:
            host.stop()

        principal = Principal(app_id=str(uuid.uuid4()), roles=frozenset({"Integrations.Admin"}))
        for label, q in (
            ("plain", {"$filter": "dataAreaId eq 'usmf'"}),
            ("$orderby=CODE", {"$filter": "dataAreaId eq 'usmf'", "$orderby": "CODE"}),
        ):
            peaks = traced_pages(principal, q, -(-args.records // 1000))
            shown = ", ".join(f"page {n}: {kib:,} KiB" for n, kib in peaks)
            print(f"in process, {label}: pages of 1,000; tracemalloc peak while reading {shown}")
        tracemalloc.start()
        from shared.services.entity_sets import read_page

        page = read_page(
            principal,
            "BenchRows",
            {"$filter": "dataAreaId eq 'usmf'", "$count": "true", "$top": "10"},
            page_size=1000,
        )
        print(
            f"in process, $count=true over {page.count:,} records: tracemalloc peak "
            f"{tracemalloc.get_traced_memory()[1] // 1024:,} KiB"
        )
        tracemalloc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
