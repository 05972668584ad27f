"""Data package import throughput through the services against Azurite, next to the same rows as a File job.

Run: .venv/bin/python bench/bench_package_import.py [--rows 40000] [--excel-rows 10000]

Starts its own in-memory Azurite, configures an entity, a Data package job and a File job, then
measures enqueue -> Processed with the import worker running in this process (no host, no queue):
- a CSV data package (two manifest entities sharing the rows, as D365 splits a project);
- the same rows as one CSV file on a File job (the pipeline's own cost, for the ratio);
- an EXCEL data package (openpyxl reading dominates).
Prints rows/s for each and the package/file ratio. Timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import uuid
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_import import ENTITY as _FILE_JOB_ENTITY  # noqa: E402

# The file-job benchmark's entity, without its label: two entities of one package share it.
ENTITY = {k: v for k, v in _FILE_JOB_ENTITY.items() if k != "label"}
HEADER = ["CUSTOMERGROUPID", "DESCRIPTION", "PAYMENTTERMS", "CREDITLIMIT", "CREATED"]


def rows(prefix: str, n: int):
    for i in range(n):
        yield [
            f"{prefix}{i:09d}",
            f"Customer group number {i}",
            f"Net{30 if i % 2 else 60}",
            f"{i}.{i % 100:02d}",
            f"2024-01-{1 + i % 28:02d} 10:00:00",
        ]


def csv_bytes(prefix: str, n: int) -> bytes:
    lines = [",".join(HEADER)] + [",".join(r) for r in rows(prefix, n)]
    return ("\r\n".join(lines) + "\r\n").encode()


def xlsx_bytes(prefix: str, n: int) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Data")
    ws.append(HEADER)
    for r in rows(prefix, n):
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def package(entity_names: list[str], files: list[tuple[str, bytes]], fmt: str) -> bytes:
    from shared.formats.package_manifest import (
        Manifest,
        ManifestEntity,
        PackageHeader,
        write_manifest,
        write_package_header,
    )

    entities = [
        ManifestEntity(entity_name=name, input_file_path=path, source_format=fmt, sequence_in_level=i + 1)
        for i, (name, (path, _)) in enumerate(zip(entity_names, files, strict=True))
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Manifest.xml", write_manifest(Manifest("Bench", entities=entities)))
        zf.writestr("PackageHeader.xml", write_package_header(PackageHeader()))
        for path, data in files:
            zf.writestr(path, data)
    return buf.getvalue()


class Bench:
    def __init__(self) -> None:
        from shared.auth.principal import Principal
        from shared.services import registry

        self.registry = registry
        self.config = registry.config_service()
        self.app = str(uuid.uuid4())
        self.principal = Principal(app_id=self.app)

    def job(self, entities: list[str], mode: str) -> object:
        project = f"Bench{uuid.uuid4().hex[:8]}"
        self.config.upsert_project(
            project, {"operation": "import", "entities": [{"entity": e} for e in entities]}
        )
        return self.config.create_job(
            {
                "name": project,
                "project": project,
                "mode": mode,
                "company": "usmf",
                "authorizationPolicy": [{"applicationId": self.app}],
            }
        ).value

    def entity(self) -> str:
        name = f"Bench{uuid.uuid4().hex[:8]}"
        self.config.upsert_entity(name, ENTITY)
        return name

    def run(self, job, data: bytes, entity: str | None) -> tuple[float, dict]:
        from shared.services import work_items

        start = time.perf_counter()
        message_id = self.registry.enqueue_service().enqueue(
            job.activity_id, self.principal, data, entity=entity, company=None, external_id=None
        )
        message = self.registry.message_repo().get_by_id(message_id)
        item = {
            "kind": work_items.KIND_MESSAGE,
            "jobId": job.activity_id,
            "messageId": message_id,
            "rowKey": message["RowKey"],
        }
        self.registry.import_worker().handle(item, claim_token=str(uuid.uuid4()))
        elapsed = time.perf_counter() - start
        done = self.registry.message_repo().get_by_id(message_id)
        assert done["Status"] == "Processed", (done["Status"], done.get("ErrorSummary"))
        return elapsed, done


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--excel-rows", type=int, default=10_000)
    args = parser.parse_args()
    from shared.storage import names
    from tools.azurite import start_azurite

    with start_azurite(in_memory=True) as azurite:
        os.environ[names.SETTING_STORAGE] = azurite.connection_string
        os.environ["MAX_ENQUEUE_BYTES"] = str(1024 * 1024 * 1024)
        bench = Bench()
        half = args.rows // 2

        # Warm-up: table creation and first-call costs out of the measured runs.
        warm = bench.entity()
        bench.run(bench.job([warm], "file"), csv_bytes("W", 100), warm)

        a, b = bench.entity(), bench.entity()
        pkg = package([a, b], [("a.csv", csv_bytes("A", half)), ("b.csv", csv_bytes("B", half))], "CSV")
        t_pkg, done = bench.run(bench.job([a, b], "package"), pkg, None)
        written = sum(c["written"] for c in done["Counts"].values())

        f = bench.entity()
        t_file, _ = bench.run(bench.job([f], "file"), csv_bytes("F", 2 * half), f)

        x = bench.entity()
        xpkg = package([x], [("x.xlsx", xlsx_bytes("X", args.excel_rows))], "EXCEL")
        t_xlsx, xdone = bench.run(bench.job([x], "package"), xpkg, None)

        pkg_rate, file_rate = written / t_pkg, 2 * half / t_file
        print(
            f"CSV data package, 2 entities, {written} rows ({len(pkg) / 1e3:.0f} KB zip): {pkg_rate:,.0f} rows/s"
        )
        print(f"same rows as one CSV File job:                       {file_rate:,.0f} rows/s")
        print(f"package / file ratio: {pkg_rate / file_rate:.2f}")
        xrows = xdone["Counts"][x]["written"]
        print(
            f"EXCEL data package, {xrows} rows ({len(xpkg) / 1e3:.0f} KB zip): {xrows / t_xlsx:,.0f} rows/s"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
