"""checkov over infra/bicep, from its own virtualenv (it pins an older pycep-parser than ours).

tools/setup_checkov.sh creates .venv-checkov when it is missing, so a fresh clone works. checkov
runs with --skip-download (no network). Skipped checks live in .checkov.yaml only, each with its
reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from .bicep_model import BICEP_DIR, ROOT, bicep_files

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CONFIG = ROOT / ".checkov.yaml"

# Checks that must run and pass: if checkov silently stopped reading a file, these would vanish.
MUST_PASS = {
    "CKV_AZURE_3",  # storage: https only
    "CKV_AZURE_44",  # storage: TLS 1.2
    "CKV_AZURE_34",  # containers: no public access
    "CKV_AZURE_15",  # web app: TLS 1.2
    "CKV_AZURE_70",  # function app: https only
    "CKV_AZURE_78",  # FTP deployments disabled
    "CKV_AZURE_67",  # HTTP/2
    "CKV_AZURE_71",  # managed identity
}


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    if not CHECKOV.exists():
        setup = subprocess.run(
            ["bash", str(ROOT / "tools" / "setup_checkov.sh")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    run = subprocess.run(
        [
            str(CHECKOV),
            "--config-file",
            str(CONFIG),
            "--framework",
            "bicep",
            "--skip-download",
            "-d",
            str(BICEP_DIR),
            "-o",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov printed no JSON (exit {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        )
    if isinstance(report, list):  # one entry per framework
        (report,) = [r for r in report if r.get("check_type") == "bicep"]
    report["exit_code"] = run.returncode
    return report


def test_checkov_passes(checkov_report):
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed:\n" + "\n".join(failed)
    assert checkov_report["exit_code"] == 0


def test_checkov_read_every_file(checkov_report):
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 30
    passed = {c["check_id"] for c in checkov_report["results"]["passed_checks"]}
    assert passed >= MUST_PASS, f"not evaluated: {MUST_PASS - passed}"
    scanned = {c["file_path"].lstrip("/") for c in checkov_report["results"]["passed_checks"]}
    expected = {"modules/storage.bicep", "modules/function-app.bicep", "modules/network.bicep"}
    assert expected <= scanned, f"checkov evaluated nothing in {expected - scanned}"


def test_skips_are_listed_once_with_a_reason():
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    start = lines.index("skip-check:")
    skipped = []
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line.startswith("  "):
            break
        item = re.fullmatch(r"  - (CKV2?_[A-Z]+_\d+)", line)
        if item:
            reason = lines[i - 1].strip()
            assert reason.startswith("# ") and len(reason) > 20, f"{item.group(1)} has no reason above it"
            skipped.append(item.group(1))
        else:
            assert line.strip().startswith("#"), f"unexpected line in skip-check: {line!r}"
    assert skipped and len(skipped) == len(set(skipped))


def test_no_inline_suppressions_in_bicep():
    for path in bicep_files():
        assert "checkov:skip" not in path.read_text(encoding="utf-8"), path.name
