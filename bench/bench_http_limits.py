"""How large an enqueue and a connector download can be and still finish under the front end's 230 s cut-off.

The Azure front end cuts every HTTP request at 230 s, whatever functionTimeout says (HOST.md, "Timeouts"), and
the host buffers request and response bodies whole. This bench times enqueues and connector downloads of
growing sizes through the local host, next to the plain SDK's blob upload and download of the same bytes on
the same Azurite (the raw ceiling), and extrapolates the size that would take 230 s at the measured rate.

Run: .venv/bin/python bench/bench_http_limits.py [--sizes-mb 16 64 256]
The figures are for this machine and the local host; Azure's network and the real host's three buffers
(Kestrel, gRPC, Python) differ, so keep a wide margin.
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

from bench.harness import local_app  # noqa: E402

CUT_OFF_SECONDS = 230
ENTITY = {"label": "Limit rows", "keys": ["K"], "fields": [{"name": "K"}]}


def best_of(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    import requests
    from azure.storage.blob import BlobServiceClient

    biggest = max(args.sizes_mb) * 1024 * 1024
    limits = {
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": str(biggest + 2 * 1024 * 1024),
        "MAX_ENQUEUE_BYTES": str(biggest + 1024 * 1024),
    }
    with local_app(extra_env=limits, name="limits") as app:
        session = requests.Session()
        partner = app.partner
        app.put("/api/manage/entities/LimitRows", ENTITY)
        imp, exp = app.import_and_export_jobs("LimitRows")
        blobs = BlobServiceClient.from_connection_string(app.azurite.connection_string)
        raw_container = blobs.get_container_client(f"raw{uuid.uuid4().hex[:8]}")
        raw_container.create_container()
        outbound = blobs.get_container_client("outbound")

        print(
            f"{'size':>8} {'enqueue':>10} {'raw upload':>11} {'ratio':>6} {'download':>10} {'raw get':>9} {'ratio':>6}"
        )
        rates = {"enqueue": [], "download": []}
        for size_mb in args.sizes_mb:
            body = os.urandom(1024) * (size_mb * 1024)

            def enqueue(body=body):
                resp = session.post(
                    f"{app.base}/api/connector/enqueue/{imp}?entity=LimitRows",
                    data=body,
                    headers=partner,
                    timeout=CUT_OFF_SECONDS * 4,
                )
                resp.raise_for_status()

            def raw_upload(body=body):
                raw_container.upload_blob("x", body, overwrite=True, max_concurrency=4)

            t_enqueue = best_of(args.runs, enqueue)
            t_upload = best_of(args.runs, raw_upload)

            # An export message whose package is then replaced by `size_mb` bytes.
            session.post(f"{app.base}/api/manage/jobs/{exp}/run", headers=app.admin).raise_for_status()
            deadline = time.monotonic() + 120
            while True:
                reply = session.get(f"{app.base}/api/connector/dequeue/{exp}", headers=partner)
                if reply.status_code == 200:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the export run produced no message")
                time.sleep(0.2)
            location = reply.json()["DownloadLocation"]
            newest = max(outbound.list_blobs(name_starts_with=exp), key=lambda b: b.last_modified)
            blob_name = newest.name
            outbound.upload_blob(blob_name, body, overwrite=True, max_concurrency=4)

            def download(location=location, size=size_mb * 1024 * 1024):
                resp = session.get(location, headers=partner, timeout=CUT_OFF_SECONDS * 4)
                resp.raise_for_status()
                assert len(resp.content) == size

            def raw_get():
                raw_container.download_blob("x", max_concurrency=4).readall()

            t_download = best_of(args.runs, download)
            t_get = best_of(args.runs, raw_get)
            rates["enqueue"].append(size_mb / t_enqueue)
            rates["download"].append(size_mb / t_download)
            print(
                f"{size_mb:>6}MB {t_enqueue:>9.2f}s {t_upload:>10.2f}s {t_upload / t_enqueue:>6.2f} "
                f"{t_download:>9.2f}s {t_get:>8.2f}s {t_get / t_download:>6.2f}"
            )
        for kind, values in rates.items():
            rate = values[-1]  # the largest size: start-up costs are amortized there
            print(
                f"{kind}: {rate:,.1f} MB/s at {args.sizes_mb[-1]} MB; at that rate {CUT_OFF_SECONDS} s "
                f"carry about {rate * CUT_OFF_SECONDS:,.0f} MB"
            )

    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
