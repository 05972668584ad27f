"""Import benchmark: enqueue→Processed through the local host vs a raw-SDK batch upsert, plus memory.

Run: .venv/bin/python bench/bench_import.py [--rows 20000] [--big-mb 200]
Prints each figure next to the raw ceiling measured on the same Azurite in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The bench's status poll (GetMessageStatus through the same host), as a client such as RIS polls. The end of the
# import is the time the app recorded for the terminal status (the message's transitions), not the poll that saw
# it: faster polling would cost the host CPU that the import's writing needs (a py-spy profile of the host at a
# 0.2 s poll: about 2 % of its busy samples were the polls), and slower polling would add up to a poll's length.
POLL_SECONDS = 1.0
HEADER = "CUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS,CREDITLIMIT,CREATED\r\n"
ENTITY = {
    "label": "Bench groups",
    "keys": ["CUSTOMERGROUPID"],
    "fields": [
        {"name": "CUSTOMERGROUPID", "type": "string", "maxLength": 20},
        {"name": "DESCRIPTION", "type": "string"},
        {"name": "PAYMENTTERMS", "type": "enum", "values": ["Net30", "Net60"]},
        {"name": "CREDITLIMIT", "type": "decimal"},
        {"name": "CREATED", "type": "datetime"},
    ],
}


def csv_rows(n: int, start: int = 0):
    for i in range(start, start + n):
        yield f"G{i:09d},Customer group number {i},Net{30 if i % 2 else 60},{i}.{i % 100:02d},2024-01-{1 + i % 28:02d} 10:00:00\r\n"


def write_csv(path: Path, target_bytes: int) -> int:
    rows = 0
    with path.open("w", newline="") as f:
        f.write(HEADER)
        size = len(HEADER)
        i = 0
        while size < target_bytes:
            chunk = "".join(csv_rows(1000, i))
            f.write(chunk)
            size += len(chunk)
            i += 1000
            rows += 1000
    return rows


def raw_ceiling(conn: str, rows: int, processes: int = 1) -> float:
    """The same typed rows, batch-upserted with the plain SDK: 100 per transaction, 8 in flight per process.
    With `processes` > 1 the batches are dealt out to that many processes (started first, then timed from one
    signal), as the app's writer processes share a large import (shared/storage/writer_processes.py)."""
    import multiprocessing

    from azure.data.tables import TableServiceClient

    batches = _raw_batches(rows)
    # The table (and its client's connection) after the rows are encoded: under load the encoding can outlast
    # Azurite's 5-second keep-alive, and the first batch (a POST, not retried) met a reset connection.
    service = TableServiceClient.from_connection_string(conn)
    table_name = f"raw{uuid.uuid4().hex[:10]}"
    service.create_table(table_name)
    if processes <= 1:
        start = time.perf_counter()
        _raw_write(conn, table_name, batches)
        return rows / (time.perf_counter() - start)
    ctx = multiprocessing.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    children = [
        ctx.Process(target=_raw_child, args=(conn, table_name, batches[i::processes], go, done))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    for _ in children:
        assert done.get(timeout=120) == "ready"
    start = time.perf_counter()
    go.set()
    for _ in children:
        assert done.get() == "written"
    elapsed = time.perf_counter() - start
    for child in children:
        child.join()
    return rows / elapsed


def _raw_batches(rows: int) -> list[list[dict]]:
    from datetime import UTC, datetime

    from shared.domain.config import parse_entity
    from shared.domain.schema import BUILTIN_FORMATS
    from shared.formats.conversion import convert
    from shared.storage.entity_repo import encode_record

    entity = parse_entity("BenchRaw", ENTITY)
    fmt = BUILTIN_FORMATS["CSV"]
    now = datetime.now(UTC)
    names = [f.name for f in entity.fields]
    by_partition: dict[str, list] = {}
    for line in csv_rows(rows):
        values = dict(zip(names, line.rstrip("\r\n").split(","), strict=True))
        record = {f.name: convert(f, values[f.name], fmt) for f in entity.fields}
        row = encode_record(entity, record, "usmf", 16, now)
        by_partition.setdefault(row["PartitionKey"], []).append(row)
    return [items[i : i + 100] for items in by_partition.values() for i in range(0, len(items), 100)]


def _raw_write(conn: str, table_name: str, batches: list[list[dict]]) -> None:
    from azure.data.tables import TableServiceClient, UpdateMode

    from shared.storage.retry import retry_call

    table = TableServiceClient.from_connection_string(conn).get_table_client(table_name)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                # Retried as the app retries its batches (an upsert batch is idempotent): under load Azurite may
                # close a pooled connection (its keep-alive is 5 s), and the SDK does not retry a POST.
                lambda b: retry_call(
                    lambda: table.submit_transaction([("upsert", r, {"mode": UpdateMode.REPLACE}) for r in b])
                ),
                batches,
            )
        )


def _raw_child(conn: str, table_name: str, batches: list[list[dict]], go, done) -> None:
    sys.path.insert(0, str(REPO))
    from azure.data.tables import TableServiceClient  # noqa: F401 - imported before the clock starts

    done.put("ready")
    go.wait()
    _raw_write(conn, table_name, batches)
    done.put("written")


def end_to_end(conn: str, rows: int, workdir: Path, writers: int) -> float:
    import requests

    from shared.auth.keys import ensure_local_keys
    from tests.devhost.hostproc import HostProcess, clean_env
    from tools.devtoken import make_token

    workdir.mkdir(parents=True, exist_ok=True)
    keys = workdir / "keys"
    ensure_local_keys(keys)
    tenant, aud = "00000000-0000-0000-0000-00000000a11c", "api://recurring-integrations-local"
    env = clean_env(
        AzureWebJobsStorage=conn,
        AUTH_MODE="local",
        AUTH_TENANT_ID=tenant,
        AUTH_AUDIENCES=aud,
        AUTH_LOCAL_KEY_DIR=str(keys),
        SCHEDULER_SCHEDULE="0 0 0 1 1 *",
        MAX_ENQUEUE_BYTES=str(512 * 1024 * 1024),
        IMPORT_WRITER_PROCESSES=str(writers),
    )
    host = HostProcess(REPO, env, workdir / "logs", name="bench")
    try:
        base = host.wait_started()
        admin = {
            "Authorization": "Bearer "
            + make_token(str(uuid.uuid4()), key_dir=keys, tenant_id=tenant, audience=aud, admin=True)
        }
        app = str(uuid.uuid4())
        partner = {"Authorization": "Bearer " + make_token(app, key_dir=keys, tenant_id=tenant, audience=aud)}
        # Every company a job names must be a configured legal entity (issue 13).
        requests.put(
            f"{base}/api/manage/legalEntities/usmf", json={"name": "USMF"}, headers=admin
        ).raise_for_status()
        requests.put(f"{base}/api/manage/entities/BenchGroups", json=ENTITY, headers=admin).raise_for_status()
        requests.put(
            f"{base}/api/manage/projects/BenchImport",
            json={"operation": "import", "entities": [{"entity": "BenchGroups"}]},
            headers=admin,
        ).raise_for_status()
        job = _ok(
            requests.post(
                f"{base}/api/manage/jobs",
                headers=admin,
                json={
                    "name": "bench",
                    "project": "BenchImport",
                    "company": "usmf",
                    "processOnArrival": True,
                    "authorizationPolicy": [{"applicationId": app}],
                },
            )
        )
        body = (HEADER + "".join(csv_rows(rows))).encode()
        start = time.time()  # wall clock: compared with the times the app records (same machine)
        resp = requests.post(
            f"{base}/api/connector/enqueue/{job['activityId']}?entity=BenchGroups", data=body, headers=partner
        )
        resp.raise_for_status()
        message_id = resp.json()
        action = (
            f"{base}/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus"
        )
        while True:
            status = requests.post(action, json={"messageId": message_id}, headers=partner).json()["value"]
            if status in ("Processed", "ProcessedWithErrors", "PreProcessingError", "PostProcessingFailed"):
                break
            time.sleep(POLL_SECONDS)
        assert status == "Processed", status
        detail = requests.get(f"{base}/api/manage/messages/{message_id}", headers=admin).json()
        transitions = detail.get("transitions") or []
        print("  phases (from the message's transitions):", _phases(transitions))
        print("  peak RSS (VmHWM):", _peak_rss(host.proc.pid))
        ended = max(_at(t["at"]) for t in transitions if t["status"] == "Processed")
        return rows / (ended - start)
    finally:
        host.stop()


def _peak_rss(root: int) -> str:
    """The peak resident memory of the host process and of its forkserver's children (the import's writer
    processes), from /proc, e.g. "host 95 MB; writers 61, 62 MB"."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue

    def below(pid: int) -> list[int]:
        return [child for child, parent in parents.items() if parent == pid]

    def hwm(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024
        except (OSError, StopIteration):
            return 0

    def cmdline(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""

    pending, seen = [root], []
    while pending:
        pid = pending.pop()
        seen.append(pid)
        pending.extend(below(pid))

    def forkserver(pid: int) -> bool:
        return "multiprocessing.forkserver" in cmdline(pid)

    servers = [pid for pid in seen if forkserver(pid) and not forkserver(parents.get(pid, 0))]
    writers = sorted(hwm(child) for server in servers for child in below(server))
    hosts = [hwm(pid) for pid in seen if "multiprocessing" not in cmdline(pid)]
    return (
        f"host processes {', '.join(map(str, hosts))} MB; "
        f"forkserver children (writers) {', '.join(map(str, writers)) or 'none'} MB"
    )


def _ok(resp) -> dict:
    """The reply's JSON; its error (status and body) when it is not a 2xx."""
    if not resp.ok:
        raise SystemExit(f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text}")
    return resp.json()


def _at(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _phases(transitions: list[dict]) -> str:
    """Seconds spent in each status before the next one, e.g. "Enqueued 0.41 s, Preprocessing 1.90 s, ..."."""
    from datetime import datetime

    times = [(t["status"], datetime.fromisoformat(t["at"].replace("Z", "+00:00"))) for t in transitions]
    return ", ".join(
        f"{status} {(later - at).total_seconds():.2f} s"
        for (status, at), (_, later) in zip(times, times[1:], strict=False)
    )


MEMORY_CHILD = r"""
import io, resource, sys, json
sys.path.insert(0, sys.argv[2])
from shared.domain.config import parse_entity
from shared.domain.schema import BUILTIN_FORMATS
from shared.services.import_pipeline import EntityInput, ErrorFile, preprocess
from shared.storage.entity_repo import encode_record
from datetime import UTC, datetime
entity = parse_entity("BenchGroups", json.loads(sys.argv[3]))
now = datetime.now(UTC)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
inp = EntityInput(entity=entity, fmt=BUILTIN_FORMATS["CSV"], open_stream=lambda: open(sys.argv[1], "rb"))
errors = ErrorFile()
outcome, spool = preprocess(inp, encode=lambda r: encode_record(entity, r, "usmf", 16, now), errors=errors)
spool.close()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": outcome.read, "growth_kb": peak - base, "peak_kb": peak}))
"""


def preprocess_memory(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(path), str(REPO), json.dumps(ENTITY)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of runs; the medians are compared")
    parser.add_argument(
        "--writers",
        type=int,
        default=None,
        help="the app's IMPORT_WRITER_PROCESSES (default: its own default on this machine)",
    )
    args = parser.parse_args()
    from shared import settings
    from tools.azurite import start_azurite

    writers = settings.import_writer_processes() if args.writers is None else args.writers
    # Each figure on a fresh Azurite (in memory, its tables grow slower as they fill), in rotating order, and the
    # median of the rounds: one pair on one Azurite varied by ±15 % between runs on this machine. Two ceilings:
    # the plain SDK in one process (issue 14's), and in as many processes as the app's writer processes.
    runs: dict[str, list[float]] = {"e2e": [], "raw": [], "rawN": []}
    kinds = ["e2e", "raw"] + (["rawN"] if writers > 1 else [])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for round_ in range(args.rounds):
            order = kinds[round_ % len(kinds) :] + kinds[: round_ % len(kinds)]
            for what in order:
                with start_azurite(in_memory=True) as azurite:
                    conn = azurite.connection_string
                    if what == "e2e":
                        runs[what].append(end_to_end(conn, args.rows, work / f"e2e{round_}", writers))
                    else:
                        runs[what].append(raw_ceiling(conn, args.rows, writers if what == "rawN" else 1))
            print(f"  round {round_ + 1}: " + ", ".join(f"{k} {runs[k][-1]:,.0f} rows/s" for k in kinds))
        e2e, raw = statistics.median(runs["e2e"]), statistics.median(runs["raw"])
        print(
            f"import end to end (enqueue -> Processed, {args.rows} rows, {writers} writer processes): "
            f"{e2e:,.0f} rows/s (median)"
        )
        print(
            f"raw SDK ceiling (batch upsert, same rows, one process, fresh Azurite): {raw:,.0f} rows/s (median)"
        )
        print(f"ratio: {e2e / raw:.2f} (issue 14's target >= 0.95)")
        if "rawN" in kinds:
            raw_n = statistics.median(runs["rawN"])
            print(
                f"raw SDK in {writers} processes (the same parallelism as the app): {raw_n:,.0f} rows/s (median)"
            )
            print(f"ratio to it: {e2e / raw_n:.2f}")
        small, big = work / "small.csv", work / "big.csv"
        write_csv(small, 2 * 1024 * 1024)
        big_rows = write_csv(big, args.big_mb * 1024 * 1024)
        m_small, m_big = preprocess_memory(small), preprocess_memory(big)
        print(
            f"preprocess RSS growth, 2 MB CSV ({m_small['rows']} rows): {m_small['growth_kb'] / 1024:.1f} MB "
            f"(peak {m_small['peak_kb'] / 1024:.1f} MB)"
        )
        print(
            f"preprocess RSS growth, {args.big_mb} MB CSV ({big_rows} rows): {m_big['growth_kb'] / 1024:.1f} MB "
            f"(peak {m_big['peak_kb'] / 1024:.1f} MB)"
        )
        print(f"difference: {(m_big['peak_kb'] - m_small['peak_kb']) / 1024:.1f} MB (target < 50 MB)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
