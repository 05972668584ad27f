"""Data package jobs end to end: real D365 packages and manifests, built packages, fail-on-error rules.

Everything goes through the local host as PSI drives D365: POST the zip to the enqueue endpoint of
a Data package job, with `Content-Type: application/zip` and no entity parameter, then poll the
message status and read the imported rows back through the records API.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date
from decimal import Decimal

import openpyxl

from shared.formats.package_manifest import (
    EntityFieldConversion,
    EntityMap,
    EntityTransform,
    ManifestEntity,
)
from tests.conftest import d365_fixture
from tests.support.packages import ZIP_HEADERS, build_package, build_zip, csv_entity, simple_entity


def package_job(api, entity_body: dict, **job) -> tuple[str, str, str]:
    """A Data package job processing on arrival, its project listing the entity: (activityId, app, entity)."""
    return api.import_job(entity_body, mode="package", processOnArrival=True, **job)


def enqueue_package(api, activity: str, app: str, data: bytes, *, external_id: str | None = None) -> str:
    resp = api.enqueue(activity, app, data, external_id=external_id, headers=ZIP_HEADERS)
    assert resp.status_code == 200, resp.text
    return resp.json()


def run_package(api, activity: str, app: str, data: bytes, expected: str) -> dict:
    message_id = enqueue_package(api, activity, app, data)
    status = api.wait_terminal(app, message_id)
    detail = api.message(message_id)
    assert status == expected, (detail.get("errorSummary"), detail)
    return detail


def add_entity(api, body: dict, prefix: str = "Pk") -> str:
    name = api.unique(prefix)
    api.ok("PUT", f"/api/manage/entities/{name}", json=body)
    return name


# The real D365 package -------------------------------------------------------------------------
ASSET_MAJOR_TYPE = {
    "label": "Fixed asset major type",
    "keys": ["MAJORTYPEID"],
    "fields": [
        {"name": "MAJORTYPEID", "type": "string", "maxLength": 20},
        {"name": "DESCRIPTION", "type": "string", "maxLength": 60},
    ],
}


def test_real_d365_excel_package_imports_end_to_end(api):
    path = d365_fixture("ms-sample-asset-major-types", "usmf_asset-major-types-01.zip")
    data = path.read_bytes()
    # What to expect, read from the workbook inside the package itself.
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        workbook = openpyxl.load_workbook(io.BytesIO(zf.read("Fixed asset major type.xlsx")), read_only=True)
        rows = [
            r for r in workbook.worksheets[0].iter_rows(values_only=True) if any(v is not None for v in r)
        ]
        workbook.close()
    header, body = list(rows[0]), rows[1:]
    expected = {r[header.index("MAJORTYPEID")]: r[header.index("DESCRIPTION")] for r in body}
    assert len(expected) == 11 and expected["COMP"] == "Computer hardware"

    # The project lists the entity as CSV; the manifest (EXCEL) wins.
    activity, app, entity = package_job(api, ASSET_MAJOR_TYPE, fmt="CSV")
    message_id = enqueue_package(api, activity, app, data, external_id="usmf_asset-major-types-01.zip")
    assert api.wait_terminal(app, message_id) == "Processed", api.message(message_id)
    detail = api.message(message_id)
    assert detail["counts"] == {entity: {"read": 11, "written": 11, "rejected": 0, "status": "Processed"}}
    assert detail["entity"] is None  # a package message names no entity
    records = {r["MAJORTYPEID"]: r for r in api.records(entity, company="usmf")}
    assert {k: v["DESCRIPTION"] for k, v in records.items()} == expected


# The real v2 manifest (194 maps, XML-Attribute) with a generated data file ----------------------
def _custbase_fields(maps: list[EntityMap]) -> list[dict]:
    typed = {
        "ORGANIZATIONNUMBEROFEMPLOYEES": "int",
        "ADDRESSLATITUDE": "decimal",
        "IFGDATEINSCRIPTION": "date",
        "ISSALESTAXINCLUDEDINPRICES": "string",
    }
    return [{"name": m.entity_field, "type": typed.get(m.entity_field, "string")} for m in maps]


def test_real_v2_manifest_with_xml_attribute_file(api):
    from lxml import etree

    from shared.formats.package_manifest import parse_manifest

    manifest_bytes = d365_fixture("itaneo-custcustomerbase", "Manifest.xml").read_bytes()
    header_bytes = d365_fixture("itaneo-custcustomerbase", "PackageHeader.xml").read_bytes()
    me = parse_manifest(manifest_bytes).entities[0]
    assert len(me.entity_maps) == 194 and me.source_format == "XML-Attribute"

    # Resolved by TargetEntity (the entity's name); the label differs from EntityName on purpose.
    name = "CustCustomerBaseEntity"
    body = {
        "label": "Customers (base) test",
        "keys": ["CUSTOMERACCOUNT"],
        "fields": _custbase_fields(me.entity_maps),
    }
    activity, app, _ = package_job(api, body, entity=name)

    root = etree.Element("Document")
    for i in range(1, 4):
        etree.SubElement(
            root,
            "CUSTCUSTOMERBASEENTITY",
            CUSTOMERACCOUNT=f"C{i:04d}",
            NAME=f"Customer {i} & Söhne",
            CUSTOMERGROUPID="10",
            ORGANIZATIONNUMBEROFEMPLOYEES=str(10 * i),
            ADDRESSLATITUDE="48.8566" if i == 1 else "",
            IFGDATEINSCRIPTION="2021-03-0" + str(i),
            ADDRESSCITY="Paris",
        )
    data_file = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    package = build_zip(
        [
            ("Manifest.xml", manifest_bytes),
            ("PackageHeader.xml", header_bytes),
            (me.input_file_path, data_file),
        ]
    )
    detail = run_package(api, activity, app, package, "Processed")
    assert detail["counts"][name] == {"read": 3, "written": 3, "rejected": 0, "status": "Processed"}
    records = {r["CUSTOMERACCOUNT"]: r for r in api.records(name, company="usmf")}
    assert sorted(records) == ["C0001", "C0002", "C0003"]
    first = records["C0001"]
    assert first["NAME"] == "Customer 1 & Söhne"
    assert first["ORGANIZATIONNUMBEROFEMPLOYEES"] == 10
    assert Decimal(first["ADDRESSLATITUDE"]) == Decimal("48.8566")
    assert first["IFGDATEINSCRIPTION"] == date(2021, 3, 1).isoformat()
    assert first["ADDRESSCITY"] == "Paris"
    assert records["C0002"]["ADDRESSLATITUDE"] is None  # an empty attribute is no value
    assert first["company"] == "usmf"


# Manifest features -------------------------------------------------------------------------------
def test_execution_order_formats_mapping_and_sheet(api):
    """Three entities, listed out of order: CSV with a manifest mapping, Excel on a named sheet, JSON."""
    a = add_entity(api, simple_entity())
    b = add_entity(api, simple_entity(label=api.unique("Label ")))
    c = add_entity(api, simple_entity())
    label_b = api.ok("GET", f"/api/manage/entities/{b}")["label"]
    activity, app, _ = package_job(api, simple_entity())

    wb = openpyxl.Workbook()
    wb.active.title = "Ignored"
    wb.active.append(["CODE", "NAME"])
    wb.active.append(["WRONG", "wrong sheet"])
    sheet = wb.create_sheet("Data")
    sheet.append(["CODE", "NAME", "AMOUNT"])
    sheet.append(["X1", "From Excel", 12.5])
    xlsx = io.BytesIO()
    wb.save(xlsx)

    entities = [
        ManifestEntity(
            entity_name=c.upper(),  # names match case-insensitively
            input_file_path="c.json",
            source_format="JSON",
            execution_unit=2,
        ),
        ManifestEntity(
            entity_name=label_b.upper(),  # by label
            input_file_path="b.xlsx",
            source_format="EXCEL",
            excel_sheet_name="Data",
            level_in_execution_unit=2,
        ),
        csv_entity(
            a,
            "a.csv",
            entity_maps=[
                EntityMap(xml_field="Kode", entity_field="CODE"),
                EntityMap(xml_field="Bezeichnung", entity_field="NAME"),
                EntityMap(xml_field="", entity_field="AMOUNT"),  # skipped: no source column
                EntityMap(xml_field="Extra", entity_field="NOT_A_FIELD"),  # skipped: not modelled
            ],
        ),
    ]
    files = {
        "a.csv": b"Kode,Bezeichnung,AMOUNT\r\nA1,Mapped,1.25\r\n",
        "b.xlsx": xlsx.getvalue(),
        "c.json": b'[{"CODE": "J1", "NAME": "From JSON", "AMOUNT": "7"}]',
    }
    detail = run_package(api, activity, app, build_package(entities, files), "Processed")
    counts = detail["counts"]
    assert list(counts) == [a, b, c]  # execution order: unit 1 level 1, unit 1 level 2, unit 2
    assert all(v["written"] == 1 and v["status"] == "Processed" for v in counts.values()), counts
    assert [(r["CODE"], r["NAME"], r["AMOUNT"]) for r in api.records(a, company="usmf")] == [
        ("A1", "Mapped", "1.25")  # AMOUNT auto-mapped by name
    ]
    assert [(r["CODE"], r["NAME"], r["AMOUNT"]) for r in api.records(b, company="usmf")] == [
        ("X1", "From Excel", "12.5")
    ]
    assert [(r["CODE"], r["AMOUNT"]) for r in api.records(c, company="usmf")] == [("J1", "7")]


def test_project_mapping_is_the_fallback_and_manifest_format_wins(api):
    activity, app, entity = package_job(
        api, simple_entity(), fmt="CSV", mapping=[{"source": "ID", "target": "CODE"}]
    )
    entities = [ManifestEntity(entity_name=entity, input_file_path="x.csv", source_format="CSV")]
    detail = run_package(
        api, activity, app, build_package(entities, {"x.csv": b"ID,NAME\nP1,From project map\n"}), "Processed"
    )
    assert detail["counts"][entity]["written"] == 1
    assert [(r["CODE"], r["NAME"]) for r in api.records(entity, company="usmf")] == [
        ("P1", "From project map")
    ]


def test_unknown_entity_and_missing_file_are_per_entity_errors(api):
    activity, app, entity = package_job(api, simple_entity())
    other, third = add_entity(api, simple_entity()), add_entity(api, simple_entity())
    entities = [
        csv_entity("No such entity", "nope.csv"),
        csv_entity(entity, "good.csv"),
        csv_entity(third, "missing.csv"),
        csv_entity(other, "good.csv", source_format="odd/format#1"),  # never a table key
    ]
    package = build_package(entities, {"nope.csv": b"CODE\n1\n", "good.csv": b"CODE,NAME\nG1,Good\n"})
    detail = run_package(api, activity, app, package, "ProcessedWithErrors")
    counts = detail["counts"]
    assert counts["No such entity"]["status"] == "Error"
    assert "not configured" in counts["No such entity"]["error"]
    assert counts[entity] == {"read": 1, "written": 1, "rejected": 0, "status": "Processed"}
    assert "No such entity: the entity 'No such entity' is not configured" in detail["errorSummary"]
    assert counts[third]["status"] == "Error"
    assert counts[third]["error"] == "Manifest.xml names 'missing.csv' but the package has no such file"
    assert counts[other]["status"] == "Error"
    assert "the source data format 'odd/format#1' is not defined" in counts[other]["error"]
    assert detail["attempts"] == 1
    assert [r["CODE"] for r in api.records(entity, company="usmf")] == ["G1"]

    # When no entity of the package can be read, the message is a PreProcessingError.
    only_unknown = build_package([csv_entity("Still unknown", "a.csv")], {"a.csv": b"CODE\n1\n"})
    detail = run_package(api, activity, app, only_unknown, "PreProcessingError")
    assert "Still unknown: the entity 'Still unknown' is not configured" in detail["errorSummary"]


def test_fail_level_and_execution_unit_on_error(api):
    """Unit 1: level 1 fails on error (an unknown entity), so the rest of level 1 does not run, but
    level 2 does. Unit 2 fails on error: a rejected record fails its first entity, and the rest of
    the unit (a later level included) does not run. Unit 3 is unaffected."""
    ents = [add_entity(api, simple_entity()) for _ in range(5)]
    activity, app, _ = package_job(api, simple_entity())
    good = b"CODE,NAME,AMOUNT\nK1,ok,1\n"
    entities = [
        csv_entity(
            ents[0], "e0.csv", level_in_execution_unit=1, sequence_in_level=1, fail_level_on_error=True
        ),
        csv_entity(
            "Unknown entity",
            "u.csv",
            level_in_execution_unit=1,
            sequence_in_level=2,
            fail_level_on_error=True,
        ),
        csv_entity(
            ents[1], "e1.csv", level_in_execution_unit=1, sequence_in_level=3, fail_level_on_error=True
        ),
        csv_entity(ents[2], "e2.csv", level_in_execution_unit=2, fail_level_on_error=True),
        csv_entity(ents[3], "bad.csv", execution_unit=2, fail_execution_unit_on_error=True),
        csv_entity(ents[4], "e4.csv", execution_unit=2, level_in_execution_unit=2),
        csv_entity(ents[4] + "Again", "e5.csv", execution_unit=3),
    ]
    files = {
        "e0.csv": good,
        "u.csv": good,
        "e1.csv": good,
        "e2.csv": good,
        "bad.csv": b"CODE,NAME,AMOUNT\nB1,ok,1\nB2,bad,not-a-number\n",
        "e4.csv": good,
        "e5.csv": good,
    }
    detail = run_package(api, activity, app, build_package(entities, files), "ProcessedWithErrors")
    counts = detail["counts"]
    assert counts[ents[0]]["status"] == "Processed"  # before the failure: it ran
    assert counts["Unknown entity"]["status"] == "Error"
    assert counts[ents[1]]["status"] == "NotRun"
    assert "FailLevelOnError" in counts[ents[1]]["error"]
    assert counts[ents[2]]["status"] == "Processed"  # another level
    assert counts[ents[3]] == {"read": 2, "written": 1, "rejected": 1, "status": "ProcessedWithErrors"}
    assert counts[ents[4]]["status"] == "NotRun"
    assert "FailExecutionUnitOnError" in counts[ents[4]]["error"]
    assert counts[ents[4] + "Again"]["status"] == "Error"  # unknown, in unit 3: only itself
    assert api.records(ents[1], company="usmf") == []
    assert api.records(ents[4], company="usmf") == []
    assert [r["CODE"] for r in api.records(ents[3], company="usmf")] == ["B1"]
    assert "not run" in detail["errorSummary"]
    assert detail["errorCount"] == 1  # the one rejected record is in the error file


def test_without_fail_flags_a_rejected_record_stops_nothing(api):
    a, b = add_entity(api, simple_entity()), add_entity(api, simple_entity())
    activity, app, _ = package_job(api, simple_entity())
    entities = [csv_entity(a, "a.csv", sequence_in_level=1), csv_entity(b, "b.csv", sequence_in_level=2)]
    files = {"a.csv": b"CODE,AMOUNT\nA1,x\nA2,2\n", "b.csv": b"CODE,AMOUNT\nB1,3\n"}
    detail = run_package(api, activity, app, build_package(entities, files), "ProcessedWithErrors")
    assert detail["counts"][a]["status"] == "ProcessedWithErrors"
    assert detail["counts"][b]["status"] == "Processed"
    assert "AMOUNT" in detail["errorSummary"]


def test_a_data_file_no_entity_reads_is_reported_not_silently_skipped(api):
    """Issue 12: a package whose manifest forgets a data file ends ProcessedWithErrors, naming the file."""
    activity, app, entity = package_job(api, simple_entity())
    files = {"good.csv": b"CODE,NAME\nU1,Kept\n", "Sales lines.csv": b"CODE,NAME\nL1,Lost?\n"}
    detail = run_package(
        api, activity, app, build_package([csv_entity(entity, "good.csv")], files), "ProcessedWithErrors"
    )
    counts = detail["counts"]
    assert counts[entity] == {"read": 1, "written": 1, "rejected": 0, "status": "Processed"}
    assert counts["Sales lines.csv"]["status"] == "Error"
    assert counts["Sales lines.csv"]["error"] == (
        "the package holds 'Sales lines.csv', which Manifest.xml names for no entity, so its records were not "
        "imported; add the entity to Manifest.xml (InputFilePath) or leave the file out"
    )
    assert "Sales lines.csv: the package holds 'Sales lines.csv'" in detail["errorSummary"]
    assert [r["CODE"] for r in api.records(entity, company="usmf")] == ["U1"]


def test_package_xslt_from_the_package_and_from_stored_transforms(api):
    """EntityTransformList: one XSLT carried in the package, one stored by name, applied in order."""
    rename = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
      <xsl:include href="common.xsl"/>
      <xsl:template match="/Partners"><Document><xsl:apply-templates select="Partner"/></Document></xsl:template>
      <xsl:template match="Partner"><ENT><CODE><xsl:value-of select="@id"/></CODE>
        <NAME><xsl:call-template name="shout"><xsl:with-param name="s" select="."/></xsl:call-template></NAME></ENT>
      </xsl:template></xsl:stylesheet>"""
    common = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
      <xsl:template name="shout"><xsl:param name="s"/>
        <xsl:value-of select="translate($s, 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')"/>
      </xsl:template></xsl:stylesheet>"""
    add_amount = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
      <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
      <xsl:template match="ENT"><ENT><xsl:apply-templates/><AMOUNT>42.5</AMOUNT></ENT></xsl:template>
    </xsl:stylesheet>"""
    stored = api.unique("addAmount")
    resp = api.admin("PUT", f"/api/manage/transforms/{stored}", data=add_amount)
    assert resp.status_code in (200, 201), resp.text
    activity, app, entity = package_job(api, simple_entity())
    me = ManifestEntity(
        entity_name=entity,
        input_file_path="partners.xml",
        source_format="XML-Element",
        transforms=[
            EntityTransform(sequence_number=2, xslt_file_name=f"{stored}.xslt"),
            EntityTransform(
                sequence_number=1, xslt_file_name="rename.xslt", xslt_resource_file_name="rename.xsl"
            ),
        ],
    )
    data = b'<Partners><Partner id="P1">acme</Partner><Partner id="P2">globex</Partner></Partners>'
    package = build_package([me], {"partners.xml": data, "rename.xsl": rename, "common.xsl": common})
    detail = run_package(api, activity, app, package, "Processed")
    assert detail["counts"][entity]["written"] == 2
    records = {r["CODE"]: r for r in api.records(entity, company="usmf")}
    assert records["P1"]["NAME"] == "ACME" and records["P2"]["AMOUNT"] == "42.5"


def test_package_job_rejects_nothing_at_enqueue_but_a_bad_zip_is_a_preprocessing_error(api):
    activity, app, _ = package_job(api, simple_entity())
    detail = run_package(api, activity, app, b"this is not a zip at all", "PreProcessingError")
    assert "not a zip file" in detail["errorSummary"]


# Value conversions in the manifest (issue 12) -------------------------------------------------------------
def test_manifest_field_conversions_are_applied(api):
    activity, app, entity = package_job(api, simple_entity())
    entities = [
        csv_entity(
            entity,
            "v.csv",
            entity_maps=[
                EntityMap(xml_field="CODE", entity_field="CODE"),
                EntityMap(
                    xml_field="Name",
                    entity_field="NAME",
                    entity_field_conversion_list=[
                        EntityFieldConversion.of("W", "Wholesale"),
                        EntityFieldConversion.of("", "(none)"),
                    ],
                ),
                EntityMap(
                    xml_field="Amount",
                    entity_field="AMOUNT",
                    entity_field_conversion_list=[EntityFieldConversion.of("n/a", "")],
                ),
            ],
        )
    ]
    data = b"CODE,Name,Amount\r\nV1,W,n/a\r\nV2,,2.5\r\nV3,w,1\r\n"
    detail = run_package(api, activity, app, build_package(entities, {"v.csv": data}), "Processed")
    assert detail["counts"][entity]["written"] == 3
    rows = {r["CODE"]: (r["NAME"], r.get("AMOUNT")) for r in api.records(entity, company="usmf")}
    # "w" is not "W": conversions match case-sensitively, so it passes through unchanged.
    assert rows == {"V1": ("Wholesale", None), "V2": ("(none)", "2.5"), "V3": ("w", "1")}


def test_a_conversion_entry_that_cannot_be_read_fails_the_entity(api):
    from shared.formats.package_manifest import EntityFieldConversion as Conv

    activity, app, entity = package_job(api, simple_entity())
    odd = Conv(values={"Left": "W", "Right": "Wholesale"})
    entities = [
        csv_entity(
            entity,
            "v.csv",
            entity_maps=[
                EntityMap(xml_field="CODE", entity_field="CODE"),
                EntityMap(xml_field="Name", entity_field="NAME", entity_field_conversion_list=[odd]),
            ],
        )
    ]
    data = b"CODE,Name\r\nV1,W\r\n"
    message_id = enqueue_package(api, activity, app, build_package(entities, {"v.csv": data}))
    status = api.wait_terminal(app, message_id)
    detail = api.message(message_id)
    assert status != "Processed", detail
    assert "EntityFieldConversionList entry #1 (Left, Right) has no SourceValue and TargetValue" in str(
        detail
    )
    assert api.records(entity, company="usmf") == []
