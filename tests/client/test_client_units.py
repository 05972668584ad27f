"""The client's small parts, without a host: Retry-After, IDs, profiles, atomic files, and packages that the
app's own manifest reader accepts."""

from __future__ import annotations

import email.utils
import io
import json
import time
import zipfile

import pytest
from d365ri.api import clean_id
from d365ri.config import load_profile
from d365ri.errors import UsageError
from d365ri.files import atomic_writer, free_name, safe_name
from d365ri.http import backoff, retry_after_seconds
from d365ri.package import build_package, is_package


def test_retry_after_integer_seconds_or_http_date():
    assert retry_after_seconds("7") == 7.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(later) <= 31
    assert retry_after_seconds(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_backoff_is_full_jitter_under_the_cap():
    waits = [backoff(n) for n in range(12) for _ in range(20)]
    assert all(0 <= w <= 60 for w in waits) and max(waits) > 1


def test_ids_lose_quotes_and_braces():
    guid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    for raw in (f'"{guid}"', f"{{{guid}}}", f'"{{{guid}}}"', f"  {guid}\n"):
        assert clean_id(raw) == guid


def write_config(tmp_path, profiles: dict, **top) -> object:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"profiles": profiles, **top}))
    return path


def test_profiles_environment_overrides_and_job_aliases(tmp_path):
    job = "6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    path = write_config(
        tmp_path,
        {
            "prod": {
                "baseUrl": "https://contoso.operations.dynamics.com/",
                "tenant": "contoso.onmicrosoft.com",
                "clientId": "c",
                "auth": "secret",
                "jobs": {"customers": {"activityId": "{" + job.upper() + "}", "entity": "Customer groups"}},
            },
            "test": {
                "baseUrl": "https://test.example",
                "auth": "device-code",
                "tenant": "t",
                "clientId": "c",
            },
        },
        defaultProfile="prod",
    )
    prod = load_profile(path, env={})
    assert prod.base_url == "https://contoso.operations.dynamics.com" and prod.auth == "secret"
    assert prod.effective_scope == "https://contoso.operations.dynamics.com/.default"
    ref = prod.job("customers")
    assert ref.activity_id == job and ref.entity == "Customer groups"
    assert prod.job(job.upper()).activity_id == job
    with pytest.raises(UsageError):
        prod.job("nope")
    chosen = load_profile(path, env={"D365RI_PROFILE": "test", "D365RI_SCOPE": "api://x/.default"})
    assert chosen.name == "test" and chosen.effective_scope == "api://x/.default"
    # A token in the environment means token sign-in, whatever the profile says.
    assert load_profile(path, env={"D365RI_TOKEN": "t"}).auth == "token"
    assert "secret" not in json.dumps(prod.public()).replace('"auth": "secret"', "")


def test_bad_profiles_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown keys: clientSecret"):
        load_profile(write_config(tmp_path, {"p": {"baseUrl": "https://x", "clientSecret": "no!"}}), env={})
    with pytest.raises(UsageError, match="no base URL"):
        load_profile(tmp_path / "missing.json", env={})
    with pytest.raises(UsageError, match="https://"):
        load_profile(tmp_path / "missing.json", base_url="ftp://x", env={})


def test_atomic_writes_leave_nothing_half_written(tmp_path):
    target = tmp_path / "out" / "file.zip"
    with pytest.raises(RuntimeError), atomic_writer(target) as out:
        out.write(b"partial")
        raise RuntimeError("cut")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_writer(target) as out:
        out.write(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in target.parent.iterdir()] == ["file.zip"]
    assert free_name(target.parent, "file.zip", "abc").name == "file-abc.zip"
    assert safe_name("../../etc/passwd") == "passwd" and safe_name('a<b>:"c".csv') == "a_b_c_.csv"


def test_a_wrapped_file_is_a_package_the_app_reads(tmp_path):
    from shared.formats.package_manifest import parse_manifest, parse_package_header

    data = tmp_path / "Customer groups 2024.csv"
    data.write_bytes(b"CODE,NAME\r\nA,B\r\n" * 1000)
    target = build_package(data, tmp_path / "p.zip", project="CustImport", entity="Customer groups")
    assert is_package(target) and not is_package(data)
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
        manifest = zf.read("Manifest.xml")
        header = zf.read("PackageHeader.xml")
        assert zf.read("Customer groups 2024.csv") == data.read_bytes()
    assert sorted(names) == ["Customer groups 2024.csv", "Manifest.xml", "PackageHeader.xml"]
    assert manifest.startswith(b"\xff\xfe") and not manifest[2:].decode("utf-16-le").startswith("<?xml")
    parsed = parse_manifest(manifest)
    assert parsed.definition_group_name == "CustImport"
    [entity] = parsed.entities
    assert entity.entity_name == "Customer groups" and entity.input_file_path == "Customer groups 2024.csv"
    assert entity.source_format is None  # the project's format applies
    assert parse_package_header(header).package_version == 2


def test_highly_compressible_data_is_stored_not_refused_as_a_bomb(tmp_path):
    data = tmp_path / "zeros.csv"
    data.write_bytes(b"0" * (4 * 1024 * 1024))
    target = build_package(data, tmp_path / "p.zip", project="P", entity="E", source_format="CSV")
    with zipfile.ZipFile(target) as zf:
        info = zf.getinfo("zeros.csv")
        assert info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size


def test_a_template_package_keeps_its_manifest(tmp_path):
    template = tmp_path / "template.zip"
    buf = io.BytesIO()
    from d365ri.package import header_xml, manifest_xml

    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Manifest.xml", manifest_xml("Proj", "Customers V3", "CUSTOMERS.csv", "CSV"))
        zf.writestr("PackageHeader.xml", header_xml("template"))
        zf.writestr("CUSTOMERS.csv", b"old")
    template.write_bytes(buf.getvalue())
    data = tmp_path / "today.csv"
    data.write_bytes(b"new rows")
    target = build_package(data, tmp_path / "p.zip", project="Proj", entity=None, template=template)
    with zipfile.ZipFile(target) as zf:
        assert zf.read("CUSTOMERS.csv") == b"new rows"
        assert zf.read("Manifest.xml") == manifest_xml("Proj", "Customers V3", "CUSTOMERS.csv", "CSV")
