"""A big import end to end with and without storage faults, next to the raw SDK upsert ceiling in the same run.

The file of issue 11 (317,476 rows by default) is enqueued to a process-on-arrival job of the local host,
which reaches Azurite through fault proxies (tools/faultproxy.py): once with no faults, once with a share of
storage requests reset (before or after the service acted). Each run reports rows/s from enqueue to
Processed, the faults survived, and the ratio to the plain SDK's batch upsert of the same rows.

Run: .venv/bin/python bench/bench_import_faults.py [--rows 317476] [--reset-rate 0.01]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_import import ENTITY, HEADER, csv_rows, raw_ceiling  # noqa: E402
from bench.harness import LocalApp, local_app  # noqa: E402

TERMINAL = ("Processed", "ProcessedWithErrors", "PreProcessingError", "PostProcessingFailed")
STATUS = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus"


def run_import(app: LocalApp, body: bytes, name: str) -> tuple[float, str]:
    import requests

    session = requests.Session()
    app.put(f"/api/manage/entities/{name}", {**ENTITY, "label": name})
    app.put(f"/api/manage/projects/{name}", {"operation": "import", "entities": [{"entity": name}]})
    activity = app.job(name, processOnArrival=True)
    partner = app.partner
    start = time.perf_counter()
    while True:  # as RIS does: re-send on a 5xx; the external ID makes the retry harmless
        resp = session.post(
            f"{app.base}/api/connector/enqueue/{activity}?entity={name}",
            data=body,
            headers={**partner, "x-ms-dyn-externalidentifier": f"{name}.csv"},
        )
        if resp.status_code < 500:
            break
    resp.raise_for_status()
    message_id = resp.json()
    while True:
        reply = session.post(f"{app.base}{STATUS}", json={"messageId": message_id}, headers=partner)
        if reply.status_code == 200 and reply.json()["value"] in TERMINAL:
            return time.perf_counter() - start, reply.json()["value"]
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=317_476)
    parser.add_argument("--reset-rate", type=float, default=0.01)
    args = parser.parse_args()

    from tests.support.faultproxy import FaultProxy, proxied_connection_string

    body = (HEADER + "".join(csv_rows(args.rows))).encode()
    proxies: dict[str, FaultProxy] = {}

    def through_proxies(azurite, work: Path) -> str:
        for service in ("blob", "queue", "table"):
            proxies[service] = FaultProxy(getattr(azurite, f"{service}_port"), work / service, seed=3)
        return proxied_connection_string(azurite, proxies)

    def resets() -> int:
        return sum(p.stats()["resets_before"] + p.stats()["resets_after"] for p in proxies.values())

    try:
        with local_app(storage=through_proxies) as app:
            results = []
            for label, rate in (("no faults", 0.0), (f"{args.reset_rate:.1%} resets", args.reset_rate)):
                for proxy in proxies.values():
                    proxy.set(reset_rate=rate)
                before = resets()
                seconds, status = run_import(app, body, f"B{uuid.uuid4().hex[:8]}")
                results.append((label, args.rows / seconds, status, resets() - before))
                # Printed at once: the raw ceiling below may still fail (a POST the SDK does not retry).
                print(
                    f"import of {args.rows} rows, {label}: {args.rows / seconds:,.0f} rows/s, {status}",
                    flush=True,
                )
            for proxy in proxies.values():
                proxy.set(reset_rate=0.0)
            raw = raw_ceiling(app.azurite.connection_string, min(args.rows, 100_000))
    finally:
        for proxy in proxies.values():
            proxy.stop()
    print(f"raw SDK ceiling (batch upsert, {min(args.rows, 100_000)} rows, same Azurite): {raw:,.0f} rows/s")
    for label, rate, status, count in results:
        print(
            f"import of {args.rows} rows, {label}: {rate:,.0f} rows/s, {status}, {count} resets survived; "
            f"ratio {rate / raw:.2f}"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
