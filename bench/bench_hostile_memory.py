"""Peak memory of the import over the hostile corpus: each input in a fresh worker process, next to a normal
file of the same format and about the same size.

Run: .venv/bin/python bench/bench_hostile_memory.py [--only NAME ...] [--target-mb 512] [--normal-cap-mb 4]

For every case of tests/support/hostile.CASES the parent writes the hostile file and a normal one to a
temporary folder, then runs each in a new Python process that imports it as the worker does: preprocess
(read, map, convert, spool) and process (batched upserts into a real Azurite started with tools.azurite).
The normal file has the hostile one's size up to --normal-cap-mb: the import streams, so a normal file's
peak does not grow with its size (bench_import.py), while its time in Azurite does.
The child reports its peak resident memory (VmHWM: the whole process, interpreter and
imports included), how the import ended, and its time. The parent prints one line per case, the worst case,
and exits 1 if any peak passes the target (the documented figure: 512 MB, a quarter of a Flex instance's
2 GB, which several concurrent messages share).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_MB = 512

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
path, fmt_name = sys.argv[2], sys.argv[3]
from datetime import UTC, datetime
from shared.domain.config import parse_entity
from shared.domain.schema import BUILTIN_FORMATS
from shared.errors import FormatError
from shared.services.import_pipeline import EntityInput, ErrorFile, preprocess, process
from shared.services.registry import entity_repo
from tests.support.packages import simple_entity

entity = parse_entity("HostileBench" + os.environ["BENCH_SUFFIX"], simple_entity())
repo = entity_repo()
repo.table(entity)  # create the table before the baseline: clients and pools are the worker's too
def hwm_kb():
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into a child's ru_maxrss across fork and exec.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


base = hwm_kb()
now = datetime.now(UTC)
errors = ErrorFile()
inp = EntityInput(entity=entity, fmt=BUILTIN_FORMATS[fmt_name.upper()], open_stream=lambda: open(path, "rb"))
start = time.perf_counter()
out = {}
try:
    outcome, spool = preprocess(inp, encode=lambda r: repo.encode(entity, r, "usmf", now), errors=errors)
    process(spool, outcome, upsert=lambda rows: repo.upsert_rows(entity, rows), errors=errors)
    out["status"] = "ProcessedWithErrors" if errors.count else "Processed"
    out["counts"] = outcome.counts()
    out["reason"] = "; ".join(errors.summary)
except FormatError as exc:
    out["status"] = "PreProcessingError"
    out["reason"] = str(exc)
out["seconds"] = time.perf_counter() - start
out["base_kb"] = base
out["peak_kb"] = hwm_kb()
print(json.dumps(out))
"""


def run_child(path: Path, fmt: str, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), str(path), fmt],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if done.returncode != 0:
        return {"status": f"crashed (exit {done.returncode})", "reason": done.stderr[-500:], "peak_kb": 0}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    from tests.support import hostile
    from tools.azurite import start_azurite

    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="case names (default: all)")
    parser.add_argument("--target-mb", type=int, default=TARGET_MB)
    parser.add_argument("--normal-cap-mb", type=float, default=4.0)
    args = parser.parse_args()
    cases = [c for c in hostile.CASES if not args.only or c.name in args.only]

    worst: tuple[float, str] = (0.0, "")
    failures = []
    with tempfile.TemporaryDirectory() as tmp, start_azurite(in_memory=True) as azurite:
        env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "PYTHONUNBUFFERED": "1"}
        print(
            f"{'case':32} {'size':>9} {'ending':20} {'peak MB':>8} {'normal MB':>9} {'ratio':>6} {'s':>7} {'normal s':>8}"
        )
        for n, case in enumerate(cases):
            hostile_path, normal_path = Path(tmp) / f"h{n}", Path(tmp) / f"n{n}"
            size = hostile.write(case.chunks(), hostile_path)
            assert case.normal is not None
            normal_size = hostile.write(case.normal(min(size, int(args.normal_cap_mb * 1e6))), normal_path)
            got = run_child(hostile_path, case.fmt, {**env, "BENCH_SUFFIX": f"H{n}"})
            normal = run_child(normal_path, case.fmt, {**env, "BENCH_SUFFIX": f"N{n}"})
            peak, normal_peak = got["peak_kb"] / 1024, normal["peak_kb"] / 1024
            ok = got["status"] == case.status and case.reason in (got.get("reason") or "")
            if not ok:
                failures.append(f"{case.name}: ended {got['status']}: {got.get('reason', '')[:300]}")
            worst = max(worst, (peak, case.name))
            print(
                f"{case.name:32} {size / 1e6:>7.2f}MB {got['status'][:20]:20} {peak:>8.0f} {normal_peak:>9.0f} "
                f"{peak / max(normal_peak, 1):>6.2f} {got.get('seconds', 0):>7.1f} {normal.get('seconds', 0):>8.1f}"
                f"{'' if ok else '  UNEXPECTED'}"
            )
            print(
                f"{'':32}   normal file {normal_size / 1e6:.2f} MB: {normal['status']} {normal.get('counts', '')}"
            )
            print(f"{'':32}   {(got.get('reason') or got.get('counts') or '')!s:.150}")
            hostile_path.unlink()
            normal_path.unlink()
    print(f"\nworst peak RSS: {worst[0]:.0f} MB ({worst[1]}); target < {args.target_mb} MB")
    for failure in failures:
        print("UNEXPECTED ENDING:", failure)
    return 1 if failures or worst[0] >= args.target_mb else 0


if __name__ == "__main__":
    # A SIGTERM unwinds like Ctrl-C, so the Azurite this run started is stopped with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - started:.0f} s)")
    sys.exit(code)
