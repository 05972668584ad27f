"""Throughput against the number of worker processes (issue 14, item 5), on one Azurite.

Run: .venv/bin/python bench/bench_worker_scaling.py [--workers 1,2,4] [--files 200] [--rows 10] [--clients 8]

The app runs split as Flex Consumption runs it: one host process with the HTTP functions and N with only the
queue functions (`python -m tools.devhost --functions queues`), sharing nothing but storage. For each N, `--files`
files of `--rows` rows are enqueued to a new process-on-arrival job while no worker runs (their items wait in the
queue), then N workers are started together. The rate counts the messages claimed after the last of them had
started, from then to the last terminal status (the times the app recorded in the messages' transitions), so
start-up is not in it. Every message must end exactly once, Processed, with its rows written; the bench checks
this and the entity table's row count, and prints it.

The raw ceiling: the plain SDK doing the worker's minimal calls per item (receive, blob download, one batch
upsert, message MERGE, queue delete) from one process, 8 items in flight, on a queue filled the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_small_files import (  # noqa: E402
    TERMINAL,
    Client,
    Raw,
    check_exactly_once,
    entity_rows,
    last_terminal_at,
    load,
    one_file,
    parse_at,
    wait_terminal,
)


def claimed_at(message: dict) -> float:
    """When a worker first changed the message (its first transition after Enqueued)."""
    later = [t for t in message["Transitions"] if t["status"] != "Enqueued"]
    return parse_at(later[0]["at"])


def run(app, workers: int, files: int, rows: int, clients: int) -> dict:
    conn = app.azurite.connection_string
    client = Client(app, f"BenchScale{workers}")
    bodies = [one_file(rows)[0] for _ in range(files)]
    with ThreadPoolExecutor(clients) as pool:
        ids = set(pool.map(client.enqueue, bodies))
    app.start_workers(workers)
    all_up = time.time()
    try:
        messages = wait_terminal(conn, client.job, ids, timeout=120 + files * rows / 20)
    finally:
        app.stop_workers()
    counted = [m for m in messages if claimed_at(m) >= all_up]
    elapsed = last_terminal_at(messages) - all_up
    problems = check_exactly_once(messages, rows)
    return {
        "workers": workers,
        "messages/s": len(counted) / elapsed,
        "rows/s": len(counted) * rows / elapsed,
        "counted": len(counted),
        "ok": len(messages) - len(problems),
        "problems": problems,
        "entity_rows": entity_rows(conn, f"BenchScale{workers}"),
        "terminal": sum(1 for m in messages if m["Status"] in TERMINAL),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rows", type=int, default=10, help="rows per file")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients filling the queue")
    args = parser.parse_args()
    from bench.harness import local_app

    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    print(f"load before: {load()}")
    print(
        f"{args.files} files of {args.rows} rows per worker count; one HTTP host process plus N queue hosts"
    )
    with local_app(name="scaling", workers=0) as app:
        warm = Client(app, "BenchScaleWarm")
        first = warm.enqueue(one_file()[0])
        app.start_workers(1)
        wait_terminal(app.azurite.connection_string, warm.job, {first}, 60)
        app.stop_workers()
        results = [run(app, n, args.files, args.rows, args.clients) for n in counts]
        raw = Raw(app.azurite.connection_string)
        ceiling = raw.burst(args.files, args.clients, rows=args.rows, prefill=True)
    print(f"raw ceiling (SDK worker calls, one process, {args.clients} in flight): {ceiling:,.1f} messages/s")
    print("workers | messages/s | rows/s | ratio to raw | counted | exactly once | entity rows")
    for r in results:
        print(
            f"{r['workers']:>7} | {r['messages/s']:>10,.1f} | {r['rows/s']:>6,.0f} | {r['messages/s'] / ceiling:>12.2f} | "
            f"{r['counted']:>7} | {r['ok']:>5} of {args.files} | {r['entity_rows']} of {args.files * args.rows}"
        )
        if r["problems"]:
            print("  problems: " + "; ".join(r["problems"][:5]))
    print(f"load after: {load()}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
