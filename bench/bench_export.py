"""Export throughput and memory on Azurite: an export run to a data package vs a plain SDK table scan.

    python -m bench.bench_export [--rows 20000 200000] [--ratio-rows 20000]

For each size it fills one entity table (8 typed fields, one company), then:
- throughput (on --ratio-rows): the raw ceiling is TableClient.list_entities over the same table;
  the export is ExportService.run_export (query, exact filter re-check, CSV formatting, deflate into
  the package, upload to blob, run record and outbound message). Each is run twice, best kept, and
  the ratio export/scan is printed (target >= 0.8);
- memory: the export runs in a child process, which reports its peak RSS (and its RSS before the
  export, after imports); the parent also reads RUSAGE_CHILDREN. The peak must not grow with rows.

Timings are printed, never asserted (ARCHITECTURE "Testing").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

ENTITY = {
    "label": "Bench customers",
    "companySpecific": True,
    "keys": ["ACCOUNT"],
    "fields": [
        {"name": "ACCOUNT", "type": "string", "maxLength": 20},
        {"name": "NAME", "type": "string"},
        {"name": "GROUP", "type": "enum", "values": ["Wholesale", "Retail", "Export"]},
        {"name": "CREDITLIMIT", "type": "decimal"},
        {"name": "PRIORITY", "type": "int"},
        {"name": "BLOCKED", "type": "bool"},
        {"name": "VALIDFROM", "type": "date"},
        {"name": "CREATED", "type": "datetime"},
    ],
}


def _rss_mb(kb: int) -> float:
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def setup(rows: int) -> dict:
    """Entity, export project and job, with `rows` rows; returns their names."""
    from shared.services.registry import config_service, entity_repo

    config = config_service()
    name = f"Bench{uuid.uuid4().hex[:8]}"
    entity = config.upsert_entity(name, ENTITY).value
    project = f"BenchExp{uuid.uuid4().hex[:8]}"
    config.upsert_project(project, {"operation": "export", "entities": [{"entity": name, "format": "CSV"}]})
    job = config.create_job({"name": project, "project": project, "company": "usmf"}).value
    repo = entity_repo()
    at = datetime.now(UTC)
    base = datetime(2020, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    chunk = 10_000
    for start in range(0, rows, chunk):
        batch = []
        for i in range(start, min(rows, start + chunk)):
            record = {
                "ACCOUNT": f"C{i:09d}",
                "NAME": f"Customer {i}, Ltd." if i % 7 == 0 else f"Customer {i}",
                "GROUP": ("Wholesale", "Retail", "Export")[i % 3],
                "CREDITLIMIT": Decimal(i) / Decimal(100),
                "PRIORITY": i % 10,
                "BLOCKED": i % 2 == 0,
                "VALIDFROM": date(2020, 1, 1) + timedelta(days=i % 1000),
                "CREATED": base + timedelta(seconds=i),
            }
            batch.append(repo.encode(entity, record, "usmf", at))
        result = repo.upsert_rows(entity, batch)
        assert not result.failed, result.failed[:3]
    took = time.perf_counter() - started
    print(f"  filled {rows:,} rows in {took:.1f}s ({rows / took:,.0f} rows/s)", flush=True)
    return {"entity": name, "job": job.activity_id, "rows": rows}


def raw_scan(entity_name: str) -> tuple[int, float]:
    from shared.services.registry import config_service, entity_repo

    table = entity_repo().table(config_service().get_entity(entity_name))
    started = time.perf_counter()
    n = sum(1 for _ in table.list_entities(results_per_page=1000))
    return n, time.perf_counter() - started


def export_once(job_id: str) -> tuple[dict, float]:
    from shared.domain import statuses
    from shared.services.registry import config_service, export_service, run_repo

    job = config_service().get_job(job_id, fresh=True)
    run_id = str(uuid.uuid4())
    run_repo().create_run(
        job.activity_id, run_id, trigger="manual", operation="export", status=statuses.RUN_WAITING
    )
    started = time.perf_counter()
    result = export_service().run_export(job, run_id)
    took = time.perf_counter() - started
    assert result.status == statuses.RUN_ENDED, result
    return {"total": result.total, "size": result.package_size}, took


def child(job_id: str) -> None:
    """Run one export and report this process's RSS before it and its peak (JSON on stdout)."""
    import shared.services.export_service  # noqa: F401  (imports count towards the baseline)
    from shared.services.registry import config_service, entity_repo, export_service, message_repo, run_repo

    for build in (config_service, entity_repo, export_service, message_repo, run_repo):
        build()
    before = _current_rss_mb()
    info, took = export_once(job_id)
    peak = _rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(json.dumps({"before_mb": before, "peak_mb": peak, "seconds": took, **info}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--ratio-rows", type=int, default=20_000, help="table size for the throughput ratio")
    parser.add_argument("--child", metavar="JOB_ID", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    from shared.storage import names
    from tools.azurite import start_azurite

    with start_azurite(in_memory=True) as azurite:
        os.environ[names.SETTING_STORAGE] = azurite.connection_string
        os.environ.setdefault("AUTH_MODE", "local")
        print(f"Azurite at {azurite.blob_endpoint}", flush=True)

        sizes = sorted(set(args.rows) | {args.ratio_rows})
        tables = {}
        for rows in sizes:
            print(f"setup {rows:,} rows", flush=True)
            tables[rows] = setup(rows)

        print(f"\nthroughput on {args.ratio_rows:,} rows (best of 2)")
        t = tables[args.ratio_rows]
        scans, exports, info = [], [], {}
        for _ in range(2):
            n, took = raw_scan(t["entity"])
            assert n == args.ratio_rows, n
            scans.append(took)
            info, took = export_once(t["job"])
            assert info["total"] == args.ratio_rows, info
            exports.append(took)
        scan_rate = args.ratio_rows / min(scans)
        export_rate = args.ratio_rows / min(exports)
        print(f"  raw SDK scan (list_entities): {scan_rate:>10,.0f} rows/s  ({min(scans):.2f}s)")
        print(
            f"  export to package:            {export_rate:>10,.0f} rows/s  ({min(exports):.2f}s, "
            f"package {info['size'] / 1e6:.2f} MB)"
        )
        print(f"  ratio export/scan: {export_rate / scan_rate:.2f}  (target >= 0.8)")

        print("\npeak RSS of an export run (child process)")
        env = {**os.environ}
        for rows in args.rows:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--child", tables[rows]["job"]],
                env=env,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(proc.stderr)
                raise SystemExit(f"the child export of {rows} rows failed")
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            children = _rss_mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
            print(
                f"  {rows:>9,} rows: peak {report['peak_mb']:.1f} MB (before export {report['before_mb']:.1f} MB, "
                f"growth {report['peak_mb'] - report['before_mb']:.1f} MB); {report['seconds']:.1f}s, "
                f"{rows / report['seconds']:,.0f} rows/s; RUSAGE_CHILDREN max so far {children:.1f} MB"
            )


if __name__ == "__main__":
    main()
