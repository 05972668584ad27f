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
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_import import ENTITY, HEADER, csv_rows, raw_ceiling  # noqa: E402

TERMINAL = ("Processed", "ProcessedWithErrors", "PreProcessingError", "PostProcessingFailed")
STATUS = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus"


def run_import(base: str, admin: dict, partner: dict, app: str, body: bytes, name: str) -> tuple[float, str]:
    import requests

    session = requests.Session()
    session.put(
        f"{base}/api/manage/entities/{name}", json={**ENTITY, "label": name}, headers=admin
    ).raise_for_status()
    session.put(
        f"{base}/api/manage/projects/{name}",
        json={"operation": "import", "entities": [{"entity": name}]},
        headers=admin,
    ).raise_for_status()
    job = session.post(
        f"{base}/api/manage/jobs",
        headers=admin,
        json={
            "name": name,
            "project": name,
            "company": "usmf",
            "processOnArrival": True,
            "authorizationPolicy": [{"applicationId": app}],
        },
    ).json()
    start = time.perf_counter()
    while True:  # as RIS does: re-send on a 5xx; the external ID makes the retry harmless
        resp = session.post(
            f"{base}/api/connector/enqueue/{job['activityId']}?entity={name}",
            data=body,
            headers={**partner, "x-ms-dyn-externalidentifier": f"{name}.csv"},
        )
        if resp.status_code < 500:
            break
    resp.raise_for_status()
    message_id = resp.json()
    while True:
        reply = session.post(f"{base}{STATUS}", json={"messageId": message_id}, headers=partner)
        if reply.status_code == 200 and reply.json()["value"] in TERMINAL:
            return time.perf_counter() - start, reply.json()["value"]
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=317_476)
    parser.add_argument("--reset-rate", type=float, default=0.01)
    args = parser.parse_args()

    from shared.auth.keys import ensure_local_keys
    from tests.devhost.hostproc import HostProcess, clean_env
    from tests.support.faultproxy import FaultProxy, proxied_connection_string
    from tools.azurite import start_azurite
    from tools.devtoken import make_token

    tenant, aud = "00000000-0000-0000-0000-00000000a11c", "api://recurring-integrations-local"
    body = (HEADER + "".join(csv_rows(args.rows))).encode()
    with tempfile.TemporaryDirectory() as tmp, start_azurite(in_memory=True) as azurite:
        work = Path(tmp)
        keys = work / "keys"
        ensure_local_keys(keys)
        proxies = {
            s: FaultProxy(getattr(azurite, f"{s}_port"), work / s, seed=3) for s in ("blob", "queue", "table")
        }
        env = clean_env(
            AzureWebJobsStorage=proxied_connection_string(azurite, proxies),
            AUTH_MODE="local",
            AUTH_TENANT_ID=tenant,
            AUTH_AUDIENCES=aud,
            AUTH_LOCAL_KEY_DIR=str(keys),
            SCHEDULER_SCHEDULE="0 0 0 1 1 *",
            POISON_SWEEP_SCHEDULE="0 0 0 1 1 *",
        )
        host = HostProcess(REPO, env, work / "logs", name="bench")
        try:
            base = host.wait_started(60)
            admin = {
                "Authorization": "Bearer "
                + make_token(str(uuid.uuid4()), key_dir=keys, tenant_id=tenant, audience=aud, admin=True)
            }
            app = str(uuid.uuid4())
            partner = {
                "Authorization": "Bearer " + make_token(app, key_dir=keys, tenant_id=tenant, audience=aud)
            }
            results = []
            for label, rate in (("no faults", 0.0), (f"{args.reset_rate:.1%} resets", args.reset_rate)):
                for proxy in proxies.values():
                    proxy.set(reset_rate=rate)
                before = sum(p.stats()["resets_before"] + p.stats()["resets_after"] for p in proxies.values())
                seconds, status = run_import(base, admin, partner, app, body, f"B{uuid.uuid4().hex[:8]}")
                after = sum(p.stats()["resets_before"] + p.stats()["resets_after"] for p in proxies.values())
                results.append((label, args.rows / seconds, status, after - before))
            for proxy in proxies.values():
                proxy.set(reset_rate=0.0)
            raw = raw_ceiling(azurite.connection_string, min(args.rows, 100_000))
        finally:
            host.stop()
            for proxy in proxies.values():
                proxy.stop()
    print(f"raw SDK ceiling (batch upsert, {min(args.rows, 100_000)} rows, same Azurite): {raw:,.0f} rows/s")
    for label, rate, status, resets in results:
        print(
            f"import of {args.rows} rows, {label}: {rate:,.0f} rows/s, {status}, {resets} resets survived; "
            f"ratio {rate / raw:.2f}"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
