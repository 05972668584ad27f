"""Small files (issue 14, items 3 and 4): the enqueue reply's latency and a burst's throughput, each next to the
plain SDK doing the same minimal calls, measured on the same Azurite in the same run.

Run: .venv/bin/python bench/bench_small_files.py [--latency-files 60] [--files 200] [--clients 8] [--workers 1]

The app runs split as on Flex Consumption (one host process with the HTTP functions, `--workers` with the queue
functions); `--workers 0` runs every function in one process.

1. Enqueue latency. One-row files enqueued one at a time to a process-on-arrival job through the local host,
   alternating with the raw floor (the SDK's blob upload, row insert and queue send, one after the other), so
   both see the same load (the workers handle the enqueued files meanwhile). Prints both p50s and their ratio
   (target <= 1.5).
2. Burst. `--files` one-row files from `--clients` threads, timed from the first enqueue to the last terminal
   status (the times the app recorded in the messages' transitions). The raw ceiling: the same clients doing the
   enqueue calls with the SDK while as many consumers receive the queue items and do the worker's minimal calls
   (blob download, one-row batch upsert, message MERGE, queue delete). Prints messages/s and the ratio (target
   >= 0.5), and checks that every message ended exactly once, Processed, with its one row written.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_import import ENTITY, HEADER, csv_rows  # noqa: E402

ENTITY_NAME = "BenchSmall"
TERMINAL = ("Processed", "ProcessedWithErrors", "PreProcessingError", "PostProcessingFailed")
_next_key = iter(range(10**9))
_key_lock = threading.Lock()


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def one_file(rows: int = 1) -> tuple[bytes, int]:
    """A CSV of `rows` rows whose keys no other file of this process uses."""
    with _key_lock:
        start = next(_next_key) * 1000
    return (HEADER + "".join(csv_rows(rows, start))).encode(), rows


class Client:
    """A partner enqueueing to one process-on-arrival job of the app (one HTTP session per thread)."""

    def __init__(self, app, entity: str = ENTITY_NAME) -> None:
        app.put(f"/api/manage/entities/{entity}", ENTITY)
        app.put(
            f"/api/manage/projects/{entity}Import", {"operation": "import", "entities": [{"entity": entity}]}
        )
        self.job = app.job(f"{entity}Import", processOnArrival=True)
        self.base = f"{app.base}/"
        self.url = f"{app.base}/api/connector/enqueue/{self.job}?entity={entity}"
        self.headers = app.partner
        self._local = threading.local()

    def enqueue(self, body: bytes) -> str:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        resp = session.post(self.url, data=body, headers=self.headers, timeout=120)
        resp.raise_for_status()
        return resp.json()

    def probe(self) -> None:
        """`GET /` on the same session: the host's HTTP round trip with a function that does nothing."""
        self._local.session.get(self.base, timeout=120).raise_for_status()


class Raw:
    """The plain SDK doing the minimal calls of one small file: enqueue's three, then the worker's."""

    def __init__(self, conn: str) -> None:
        from azure.data.tables import TableServiceClient
        from azure.storage.blob import BlobServiceClient
        from azure.storage.queue import QueueServiceClient

        tag = uuid.uuid4().hex[:8]
        self.container = BlobServiceClient.from_connection_string(conn).create_container(f"raw{tag}")
        tables = TableServiceClient.from_connection_string(conn)
        self.messages = tables.create_table(f"rawmsg{tag}")
        self.rows = tables.create_table(f"rawent{tag}")
        self.queue = QueueServiceClient.from_connection_string(conn).create_queue(f"raw{tag}")
        self.job = str(uuid.uuid4())

    def enqueue(self, body: bytes) -> str:
        message_id = str(uuid.uuid4())
        blob = f"{self.job}/{message_id}"
        self.container.upload_blob(blob, body, overwrite=True)
        row_key = f"{time.time_ns() // 1000:020d}-{message_id}"
        self.messages.create_entity(
            {"PartitionKey": self.job, "RowKey": row_key, "MessageId": message_id, "Status": "Enqueued"}
        )
        item = json.dumps({"messageId": message_id, "rowKey": row_key, "blob": blob})
        self.queue.send_message(base64.b64encode(item.encode()).decode())
        return message_id

    def work(self, queued) -> int:
        """The worker's minimal calls for one queue item; the rows written."""
        from azure.data.tables import UpdateMode

        item = json.loads(base64.b64decode(queued.content))
        data = self.container.download_blob(item["blob"]).readall().decode()
        rows = [line.split(",") for line in data.splitlines()[1:] if line]
        self.rows.submit_transaction(
            [
                (
                    "upsert",
                    {"PartitionKey": "usmf", "RowKey": r[0], "Description": r[1]},
                    {"mode": UpdateMode.REPLACE},
                )
                for r in rows
            ]
        )
        self.messages.update_entity(
            {"PartitionKey": self.job, "RowKey": item["rowKey"], "Status": "Processed", "Written": len(rows)},
            mode=UpdateMode.MERGE,
        )
        self.queue.delete_message(queued)
        return len(rows)

    def burst(self, files: int, clients: int, rows: int = 1, prefill: bool = False) -> float:
        """Messages/s: `clients` threads enqueue `files` files while a poller hands queue items to as many
        workers (the host's queue runner: batches of 8, a pool of threads). With `prefill`, the files are
        enqueued first and only the workers are timed."""
        bodies = [one_file(rows)[0] for _ in range(files)]
        if prefill:
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(self.enqueue, bodies))
            bodies = []
        done = threading.Semaphore(0)
        stop = threading.Event()
        workers = ThreadPoolExecutor(clients)
        in_flight = threading.Semaphore(clients + 4)

        def run(queued) -> None:
            try:
                self.work(queued)
                done.release()
            finally:
                in_flight.release()

        def poll() -> None:
            while not stop.is_set():
                got = 0
                for queued in self.queue.receive_messages(
                    messages_per_page=8, max_messages=8, visibility_timeout=60
                ):
                    in_flight.acquire()
                    workers.submit(run, queued)
                    got += 1
                if not got:
                    time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        start = time.perf_counter()
        poller.start()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(self.enqueue, bodies))
        for _ in range(files):
            done.acquire()
        elapsed = time.perf_counter() - start
        stop.set()
        poller.join()
        workers.shutdown()
        return files / elapsed


def messages_of(conn: str, job: str) -> list[dict]:
    from azure.data.tables import TableClient

    table = TableClient.from_connection_string(conn, "messages")
    out = []
    for row in table.query_entities("PartitionKey eq @job", parameters={"job": job}):
        if row.get("MessageId"):
            row = dict(row)
            row["Transitions"] = json.loads(row.get("Transitions") or "[]")
            row["Counts"] = json.loads(row.get("Counts") or "{}")
            out.append(row)
    return out


def wait_terminal(conn: str, job: str, ids: set[str], timeout: float) -> list[dict]:
    """The job's messages once every one of `ids` is terminal (polled every 0.25 s on the messages table)."""
    from azure.data.tables import TableClient

    table = TableClient.from_connection_string(conn, "messages")
    deadline = time.monotonic() + timeout
    while True:
        ended = {
            row["MessageId"]
            for row in table.query_entities(
                "PartitionKey eq @job", parameters={"job": job}, select=["MessageId", "Status"]
            )
            if row.get("Status") in TERMINAL
        }
        if ids <= ended:
            return [m for m in messages_of(conn, job) if m["MessageId"] in ids]
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(ids - ended)} of {len(ids)} messages not terminal after {timeout:.0f} s")
        time.sleep(0.25)


def parse_at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def check_exactly_once(messages: list[dict], rows_per_file: int) -> list[str]:
    """Problems: a message not Processed, a terminal status recorded other than once, a count not exact."""
    problems = []
    for m in messages:
        statuses = [t["status"] for t in m["Transitions"]]
        terminal = [s for s in statuses if s in TERMINAL]
        written = sum(int(c.get("written") or 0) for c in m["Counts"].values() if isinstance(c, dict))
        if m["Status"] != "Processed" or terminal != ["Processed"] or statuses.count("Processing") != 1:
            problems.append(f"{m['MessageId']}: {m['Status']} via {statuses}")
        elif written != rows_per_file:
            problems.append(f"{m['MessageId']}: written {written}, expected {rows_per_file}")
    return problems


def spans(messages: list[dict]) -> str:
    """Each message's time from Enqueued to its terminal status: p50 and the slowest, with its transitions (a
    burst's rate is its slowest message's)."""

    def span(m: dict) -> float:
        at = {t["status"]: parse_at(t["at"]) for t in m["Transitions"]}
        return max(v for k, v in at.items() if k in TERMINAL) - at["Enqueued"]

    ordered = sorted(messages, key=span)
    slowest = ordered[-1]
    steps = ", ".join(f"{t['status']} {t['at'][11:23]}" for t in slowest["Transitions"])
    return (
        f"per message, Enqueued -> terminal: p50 {span(ordered[len(ordered) // 2]):.2f} s, slowest "
        f"{span(slowest):.2f} s ({steps})"
    )


def last_terminal_at(messages: list[dict]) -> float:
    return max(parse_at(t["at"]) for m in messages for t in m["Transitions"] if t["status"] in TERMINAL)


def entity_rows(conn: str, entity: str) -> int:
    from azure.data.tables import TableClient

    from shared.storage.entity_repo import entity_table_name

    table = TableClient.from_connection_string(conn, entity_table_name(entity))
    return sum(1 for _ in table.query_entities("", select=["RowKey"]))


def latency(client: Client, raw: Raw, n: int) -> tuple[float, float, float, list[str]]:
    """p50s of the enqueue reply, of the raw floor and of the host's bare HTTP round trip (`GET /`, which does
    nothing: what the hop through the host costs before any storage call), and the IDs enqueued."""
    ours, floor, hop, ids = [], [], [], []
    for i in range(n + 5):  # the first five warm both paths (connections, caches) and are not counted
        body = one_file()[0]
        t0 = time.perf_counter()
        ids.append(client.enqueue(body))
        t1 = time.perf_counter()
        raw.enqueue(one_file()[0])
        t2 = time.perf_counter()
        client.probe()
        t3 = time.perf_counter()
        if i >= 5:
            ours.append(t1 - t0)
            floor.append(t2 - t1)
            hop.append(t3 - t2)
    return statistics.median(ours), statistics.median(floor), statistics.median(hop), ids


def burst(conn: str, client: Client, files: int, clients: int) -> tuple[float, list[dict]]:
    bodies = [one_file()[0] for _ in range(files)]
    start = time.time()
    with ThreadPoolExecutor(clients) as pool:
        ids = set(pool.map(client.enqueue, bodies))
    messages = wait_terminal(conn, client.job, ids, timeout=60 + files)
    return files / (last_terminal_at(messages) - start), messages


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--latency-files", type=int, default=60, help="enqueues timed (each next to a raw one)"
    )
    parser.add_argument("--files", type=int, default=200, help="one-row files in the burst")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the burst")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="queue-function host processes beside the HTTP one, as Flex runs them (0: one process runs all)",
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-burst", action="store_true")
    args = parser.parse_args()
    from bench.harness import local_app

    print(f"load before: {load()}")
    print(
        f"app: {'one host process' if not args.workers else f'split: 1 HTTP host + {args.workers} queue host(s)'}"
    )
    with local_app(name="small", workers=args.workers or None) as app:
        conn = app.azurite.connection_string
        raw = Raw(conn)
        client = Client(app)
        one_file_done = client.enqueue(one_file()[0])  # the tables, queues and caches exist from here
        wait_terminal(conn, client.job, {one_file_done}, 60)
        if not args.skip_latency:
            ours, floor, hop, ids = latency(client, raw, args.latency_files)
            print(f"enqueue reply p50, one-row file, {args.latency_files} enqueues: {ours * 1000:.1f} ms")
            print(f"raw floor p50 (SDK blob upload + row insert + queue send):   {floor * 1000:.1f} ms")
            print(f"ratio: {ours / floor:.2f} (target <= 1.5)")
            print(
                f"of which the host's bare HTTP round trip (GET / p50): {hop * 1000:.1f} ms ({hop / floor:.2f})"
            )
            wait_terminal(conn, client.job, set(ids), timeout=120)
        if not args.skip_burst:
            burst_client = Client(app, "BenchBurst")
            rate, messages = burst(conn, burst_client, args.files, args.clients)
            ceiling = raw.burst(args.files, args.clients)
            problems = check_exactly_once(messages, 1)
            rows = entity_rows(conn, "BenchBurst")
            print(
                f"burst: {args.files} one-row files from {args.clients} clients, enqueue -> all terminal: "
                f"{rate:,.1f} messages/s"
            )
            print(
                f"raw ceiling (SDK, same minimal calls, same concurrency):           {ceiling:,.1f} messages/s"
            )
            print(f"ratio: {rate / ceiling:.2f} (target >= 0.5)")
            print(spans(messages))
            print(
                f"exactly once: {len(messages) - len(problems)} of {args.files} Processed once with 1 row written; "
                f"entity rows {rows} (expected {args.files})"
                + ("" if not problems else "; problems: " + "; ".join(problems[:5]))
            )
    print(f"load after: {load()}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
