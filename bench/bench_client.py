"""Throughput of the partner client (client/, d365ri) next to curl on the same run, for one large file.

Four transfers of the same bytes (default 200 MB), each timed for d365ri and for curl:
- enqueue: `d365ri enqueue --package never` (a process, with its start-up) vs `curl --data-binary` to the same
  endpoint of the local host (the host's and the app's body limits are raised above the size);
- blob upload: the package path's upload to a GetAzureWriteUrl SAS URL (d365ri's Put Block upload, in this
  process) vs `curl -T` (one Put Blob) to another write URL;
- dequeue: `d365ri dequeue` (a process: dequeue, download through the host, size check, atomic write, ack)
  vs `curl` of the DownloadLocation with the token, each on its own export message of that size;
- SAS download: d365ri's verified atomic download (in this process) vs `curl` of the same read SAS URL.
Downloads are written to files by both (d365ri also fsyncs them before the rename; curl does not).
Each enqueue uses its own external ID, so de-duplication never shortens a run. Timings are printed, never
asserted. Run: .venv/bin/python bench/bench_client.py [--size-mb 200] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "client" / "src"))

TENANT, AUDIENCE = "00000000-0000-0000-0000-00000000a11c", "api://recurring-integrations-local"
ENTITY = {"label": "Bench rows", "keys": ["K"], "fields": [{"name": "K"}]}


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def best(runs: int, work) -> float:
    return min(timed(work) for _ in range(runs))


def curl(*args: str, out: str = os.devnull) -> None:
    done = subprocess.run(["curl", "-sS", "--fail", "-o", out, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"curl failed: {done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("curl"):
        print("curl is not installed: apt-get install -y curl")
        return 1

    import requests
    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas
    from d365ri.api import Api
    from d365ri.auth import StaticToken
    from d365ri.config import Profile
    from d365ri.http import Transport
    from d365ri.transfer import download_to, upload_to_blob

    from shared.auth.keys import ensure_local_keys
    from tests.devhost.hostproc import HostProcess, clean_env
    from tools.azurite import start_azurite
    from tools.devtoken import make_token

    size = args.size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp, start_azurite(in_memory=True) as azurite:
        work = Path(tmp)
        keys = work / "keys"
        ensure_local_keys(keys)
        env = clean_env(
            AzureWebJobsStorage=azurite.connection_string,
            AUTH_MODE="local",
            AUTH_TENANT_ID=TENANT,
            AUTH_AUDIENCES=AUDIENCE,
            AUTH_LOCAL_KEY_DIR=str(keys),
            SCHEDULER_SCHEDULE="0 0 0 1 1 *",
            FUNCTIONS_REQUEST_BODY_SIZE_LIMIT=str(size + 4 * 1024 * 1024),
            MAX_ENQUEUE_BYTES=str(size + 2 * 1024 * 1024),
        )
        host = HostProcess(REPO, env, work / "logs", name="bench-client")
        try:
            base = host.wait_started(60)
            app = str(uuid.uuid4())
            admin = {
                "Authorization": "Bearer "
                + make_token(str(uuid.uuid4()), key_dir=keys, tenant_id=TENANT, audience=AUDIENCE, admin=True)
            }
            token = make_token(app, key_dir=keys, tenant_id=TENANT, audience=AUDIENCE, minutes=240)
            partner = {"Authorization": f"Bearer {token}"}
            http = requests.Session()

            def put(path: str, body: dict) -> dict:
                resp = http.request(
                    "POST" if path.endswith("jobs") else "PUT", base + path, json=body, headers=admin
                )
                resp.raise_for_status()
                return resp.json() if resp.content else {}

            put("/api/manage/entities/BenchRows", ENTITY)
            put(
                "/api/manage/projects/BenchImport",
                {"operation": "import", "entities": [{"entity": "BenchRows"}]},
            )
            put(
                "/api/manage/projects/BenchExport",
                {"operation": "export", "entities": [{"entity": "BenchRows"}]},
            )
            policy = [{"applicationId": app}]
            imp = put(
                "/api/manage/jobs",
                {"name": "imp", "project": "BenchImport", "company": "usmf", "authorizationPolicy": policy},
            )["activityId"]
            exp = put(
                "/api/manage/jobs",
                {"name": "exp", "project": "BenchExport", "company": "usmf", "authorizationPolicy": policy},
            )["activityId"]

            data = work / "big.bin"
            with open(data, "wb") as f:
                block = os.urandom(1024 * 1024)
                for _ in range(args.size_mb):
                    f.write(block)
            cli_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("D365RI_")},
                "PYTHONPATH": str(REPO / "client" / "src"),
                "D365RI_HOME": str(work / "home"),
                "D365RI_BASE_URL": base,
                "D365RI_TOKEN": token,
            }

            def cli(*argv: str) -> dict:
                done = subprocess.run(
                    [sys.executable, "-m", "d365ri", "--quiet", "--json", *argv],
                    env=cli_env,
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"d365ri {argv[0]} failed: {done.stderr}")
                return json.loads(done.stdout)

            rows = []

            # 1. enqueue ------------------------------------------------------------------------------------
            url = f"{base}/api/connector/enqueue/{imp}?entity=BenchRows"
            t_cli = best(
                args.runs,
                lambda: cli(
                    "enqueue",
                    imp,
                    str(data),
                    "--entity",
                    "BenchRows",
                    "--package",
                    "never",
                    "--external-id",
                    f"cli-{uuid.uuid4()}",
                ),
            )
            t_curl = best(
                args.runs,
                lambda: curl(
                    "-X",
                    "POST",
                    "--data-binary",
                    f"@{data}",
                    "-H",
                    f"Authorization: Bearer {token}",
                    "-H",
                    f"x-ms-dyn-externalidentifier: curl-{uuid.uuid4()}",
                    url,
                ),
            )
            rows.append(("enqueue through the host", t_cli, t_curl))

            # 2. blob upload (package path) ------------------------------------------------------------------
            transport = Transport(
                base, StaticToken(Profile(name="b", base_url=base), {"D365RI_TOKEN": token})
            )
            api = Api(transport, quiet=True)
            t_cli = best(
                args.runs, lambda: upload_to_blob(transport, api.write_url("bench.zip")[1], data, quiet=True)
            )
            t_curl = best(
                args.runs,
                lambda: curl(
                    "-X",
                    "PUT",
                    "-T",
                    str(data),
                    "-H",
                    "x-ms-blob-type: BlockBlob",
                    api.write_url("bench-curl.zip")[1],
                ),
            )
            rows.append(("blob upload (package API)", t_cli, t_curl))

            # 3. dequeue: one export message per run, its package replaced by the big file ---------------------
            blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
            outbound = blobs.get_container_client("outbound")

            def big_export_message() -> None:
                before = {b.name for b in outbound.list_blobs(name_starts_with=exp)}
                http.post(f"{base}/api/manage/jobs/{exp}/run", headers=admin).raise_for_status()
                deadline = time.monotonic() + 120
                while True:
                    new = [b.name for b in outbound.list_blobs(name_starts_with=exp) if b.name not in before]
                    if new:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("the export run wrote no package")
                    time.sleep(0.2)
                time.sleep(1.0)  # the message row follows the package blob
                with open(data, "rb") as f:
                    outbound.upload_blob(new[0], f, overwrite=True, max_concurrency=4)

            def cli_dequeue() -> None:
                out = work / f"inbox-{uuid.uuid4().hex[:6]}"
                got = cli("dequeue", exp, "--out", str(out))["files"]
                assert len(got) == 1 and got[0]["size"] == size, got
                shutil.rmtree(out)

            def curl_dequeue() -> None:
                reply = http.get(f"{base}/api/connector/dequeue/{exp}", headers=partner)
                reply.raise_for_status()
                location = reply.json()["DownloadLocation"]
                seconds = timed(
                    lambda: curl("-H", f"Authorization: Bearer {token}", location, out=str(work / "c.zip"))
                )
                http.post(
                    f"{base}/api/connector/ack/{exp}", json=reply.json(), headers=partner
                ).raise_for_status()
                curl_times.append(seconds)

            cli_times, curl_times = [], []
            for _ in range(args.runs):
                big_export_message()
                cli_times.append(timed(cli_dequeue))
                big_export_message()
                curl_dequeue()
            rows.append(("dequeue + download + ack", min(cli_times), min(curl_times)))

            # 4. SAS download (export package path) ------------------------------------------------------------
            container = blobs.get_container_client(f"bench{uuid.uuid4().hex[:8]}")
            container.create_container()
            with open(data, "rb") as f:
                container.upload_blob("big.zip", f, max_concurrency=4)
            account = blobs.account_name
            key = dict(p.split("=", 1) for p in azurite.connection_string.split(";") if p)["AccountKey"]
            sas = generate_blob_sas(
                account,
                container.container_name,
                "big.zip",
                account_key=key,
                permission=BlobSasPermissions(read=True),
                expiry=__import__("datetime").datetime.now(__import__("datetime").UTC)
                + __import__("datetime").timedelta(hours=1),
            )
            read_url = f"{container.url}/big.zip?{sas}"
            target = work / "sas.zip"
            t_cli = best(
                args.runs,
                lambda: download_to(transport, read_url, target, what="bench", auth=False, quiet=True),
            )
            t_curl = best(args.runs, lambda: curl(read_url, out=str(work / "c.zip")))
            rows.append(("SAS download (package API)", t_cli, t_curl))

            print(f"{args.size_mb} MB, best of {args.runs}; d365ri next to curl on the same host and Azurite")
            print(f"{'transfer':<28} {'d365ri':>9} {'MB/s':>7} {'curl':>9} {'MB/s':>7} {'ratio':>6}")
            for name, a, b in rows:
                print(
                    f"{name:<28} {a:>8.2f}s {args.size_mb / a:>7.1f} {b:>8.2f}s {args.size_mb / b:>7.1f} {b / a:>6.2f}"
                )
        finally:
            host.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
