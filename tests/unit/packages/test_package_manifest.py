"""Manifest.xml / PackageHeader.xml: real D365 files, re-encoded and reordered variants, exact writing."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from shared.errors import FormatError
from shared.formats.package_manifest import (
    DM_NS,
    MANIFEST_TYPE,
    XSI_NS,
    EntityFieldConversion,
    EntityMap,
    EntityTransform,
    Manifest,
    ManifestEntity,
    PackageHeader,
    ordered_entities,
    parse_manifest,
    parse_package_header,
    write_manifest,
    write_package_header,
)

V1 = "ms-sample-asset-major-types"
V2 = "itaneo-custcustomerbase"


def _read(d365: Path, folder: str, name: str) -> bytes:
    return (d365 / folder / name).read_bytes()


def _utf8_variants(utf16: bytes) -> dict[str, bytes]:
    """The ways tools rewrite D365's UTF-16 files, derived here from the real bytes."""
    assert utf16[:2] == b"\xff\xfe"
    text = utf16[2:].decode("utf-16-le")
    return {
        "utf8": text.encode("utf-8"),
        "utf8-bom": b"\xef\xbb\xbf" + text.encode("utf-8"),
        "utf8-decl": ('<?xml version="1.0" encoding="utf-8"?>\r\n' + text).encode("utf-8"),
        "utf8-bom-decl": b"\xef\xbb\xbf" + ('<?xml version="1.0" encoding="UTF-8"?>' + text).encode("utf-8"),
        # .NET's classic mistake: UTF-8 bytes under a UTF-16 declaration.
        "utf8-lying-decl": ('<?xml version="1.0" encoding="utf-16"?>' + text).encode("utf-8"),
        "utf16-decl": b"\xff\xfe" + ('<?xml version="1.0" encoding="utf-16"?>' + text).encode("utf-16-le"),
        "utf16-no-bom": text.encode("utf-16-le"),
        "utf16-be": b"\xfe\xff" + text.encode("utf-16-be"),
        "crlf": text.replace("\n", "\r\n").encode("utf-8"),
        "mixed-endings": "".join(
            line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(text.split("\n"))
        ).encode("utf-8"),
    }


def _shuffled(data: bytes) -> bytes:
    """Reverse the order of the members of every data contract (not of list items)."""
    root = etree.fromstring(data)

    def walk(el: etree._Element) -> None:
        kids = [c for c in el if isinstance(c.tag, str)]
        names = [etree.QName(c).localname for c in kids]
        if len(set(names)) == len(names):  # a contract: distinct member names
            for c in kids:
                el.remove(c)
            for c in reversed(kids):
                el.append(c)
        for c in kids:
            walk(c)

    walk(root)
    return etree.tostring(root, encoding="utf-8")


# ---------------------------------------------------------------- real files


def test_v1_manifest_from_d365(d365: Path) -> None:
    m = parse_manifest(_read(d365, V1, "Manifest.xml"))
    assert m.definition_group_name == "Asset-Major-Types"
    assert m.description == "Asset-Major-Types"
    assert len(m.entities) == 1
    e = m.entities[0]
    assert e.entity_name == "Fixed asset major type"
    assert e.source_format == "EXCEL"
    assert e.excel_sheet_name == ""  # <ExcelSheetName /> is empty, not nil
    assert e.input_file_path == "Fixed asset major type.xlsx"
    assert (e.execution_unit, e.level_in_execution_unit, e.sequence_in_level) == (1, 1, 1)
    assert e.transforms == []  # EntityTransformList i:nil="true"
    assert e.run_business_logic is True and e.run_business_validation is True
    assert e.fail_execution_unit_on_error is False and e.fail_level_on_error is False
    assert e.sample_file_path == ""
    assert e.validation_status == "Yes"
    assert [(mp.xml_field, mp.entity_field) for mp in e.entity_maps] == [
        ("DESCRIPTION", "DESCRIPTION"),
        ("MAJORTYPEID", "MAJORTYPEID"),
    ]
    assert e.entity_maps[0].entity_field_conversion_list == []
    assert e.entity_maps[0].array_index == 0


def test_v1_header_from_d365(d365: Path) -> None:
    h = parse_package_header(_read(d365, V1, "PackageHeader.xml"))
    assert h == PackageHeader(
        description="Asset-Major-Types",
        manifest_type=MANIFEST_TYPE,
        package_type="DefinitionGroup",
        package_version=1,
    )


def test_v2_manifest_from_d365(d365: Path) -> None:
    m = parse_manifest(_read(d365, V2, "Manifest.xml"))
    assert m.definition_group_name == "IFG_CUSTCUSTOMERBASEENTITY"
    assert m.description == "IFG Customer Definition Import"
    assert m.project_category == "0"
    assert m.rules_data is None
    (e,) = m.entities
    assert e.entity_name == "Customer definitions"
    assert e.source_format == "XML-Attribute"
    assert e.input_file_path == "CUSTCUSTOMERBASEENTITY.xml"
    assert e.target_entity == "CustCustomerBaseEntity"
    assert e.default_refresh_type == "FullPush"
    assert e.disable is False
    assert e.query_filter is None
    assert e.query_data is not None and e.query_data.split()[0].startswith("4a012f27")
    assert len(e.entity_maps) == 194
    assert e.entity_maps[0].xml_field == "ADDRESSBOOKS"
    assert e.entity_maps[-1].entity_field == "WAREHOUSEID"


def test_v2_header_from_d365_with_crlf_and_tabs(d365: Path) -> None:
    raw = _read(d365, V2, "PackageHeader.xml")
    assert b"\r\x00\n\x00\t\x00" in raw  # the fixture really is CRLF + tab indented
    h = parse_package_header(raw)
    assert h.description == "IFG_CUSTCUSTOMERBASEENTITY"
    assert h.package_version == 2


@pytest.mark.parametrize("folder", [V1, V2])
def test_utf8_and_other_encodings_parse_identically(d365: Path, folder: str) -> None:
    manifest = _read(d365, folder, "Manifest.xml")
    header = _read(d365, folder, "PackageHeader.xml")
    expected_m, expected_h = parse_manifest(manifest), parse_package_header(header)
    for name, variant in _utf8_variants(manifest).items():
        assert parse_manifest(variant) == expected_m, name
    for name, variant in _utf8_variants(header).items():
        assert parse_package_header(variant) == expected_h, name


@pytest.mark.parametrize("folder", [V1, V2])
def test_element_order_does_not_matter(d365: Path, folder: str) -> None:
    manifest = _read(d365, folder, "Manifest.xml")
    shuffled = _shuffled(manifest)
    assert shuffled != manifest.decode("utf-16").encode("utf-8")
    # The shuffle really moved things: the root's first member is no longer DefinitionGroupName.
    assert etree.QName(etree.fromstring(shuffled)[0]).localname != "DefinitionGroupName"
    assert parse_manifest(shuffled) == parse_manifest(manifest)
    header = _read(d365, folder, "PackageHeader.xml")
    assert parse_package_header(_shuffled(header)) == parse_package_header(header)


# ---------------------------------------------------------------- writing


def test_v1_written_byte_for_byte_like_d365(d365: Path) -> None:
    manifest = _read(d365, V1, "Manifest.xml")
    header = _read(d365, V1, "PackageHeader.xml")
    assert write_manifest(parse_manifest(manifest), package_version=1) == manifest
    assert write_package_header(parse_package_header(header)) == header


@pytest.mark.parametrize("folder,version", [(V1, 1), (V2, 2)])
def test_write_parse_round_trip_of_real_files(d365: Path, folder: str, version: int) -> None:
    m = parse_manifest(_read(d365, folder, "Manifest.xml"))
    assert parse_manifest(write_manifest(m, package_version=version)) == m
    h = parse_package_header(_read(d365, folder, "PackageHeader.xml"))
    assert parse_package_header(write_package_header(h)) == h


def _rich_manifest() -> Manifest:
    return Manifest(
        definition_group_name="Orders & <lines>",
        description="Line 1\r\nLine 2\nÜmlaut ✓ \"quoted\" 'single'",
        project_category="0",
        rules_data=None,
        entities=[
            ManifestEntity(
                entity_name="Sales order lines V2",
                input_file_path="Sales order lines V2.csv",
                source_format="CSV",
                execution_unit=1,
                level_in_execution_unit=10,
                sequence_in_level=2,
                fail_level_on_error=True,
                default_refresh_type="IncrementalPush",
                disable=True,
                entity_maps=[
                    EntityMap(
                        xml_field="ITEM",
                        entity_field="ITEMNUMBER",
                        array_index=3,
                        is_auto_default=True,
                        use_text_qualifier=True,
                        entity_field_conversion_list=[
                            EntityFieldConversion(values={"FromValue": "A", "ToValue": None})
                        ],
                    ),
                    EntityMap(xml_field=None, entity_field="QTY", is_auto_generated=True),
                ],
                transforms=[
                    EntityTransform(1, "first.xslt", "first.xslt"),
                    EntityTransform(2, "second.xslt", None),
                ],
                query_data=None,
                query_filter="(ITEMNUMBER == 'A')",
                target_entity="SalesOrderLineV2Entity",
                run_business_validation=False,
                sample_file_path=None,
                validation_status="No",
            ),
            ManifestEntity(
                entity_name="Customers V3", input_file_path="Customers V3.xml", source_format="XML-Element"
            ),
        ],
    )


def test_write_parse_round_trip_of_everything() -> None:
    m = _rich_manifest()
    assert parse_manifest(write_manifest(m, package_version=2)) == m
    h = PackageHeader(description="Orders & <lines>", package_version=2)
    assert parse_package_header(write_package_header(h)) == h


def _assert_datacontract_shape(data: bytes) -> etree._Element:
    assert data[:2] == b"\xff\xfe"
    text = data[2:].decode("utf-16-le")
    assert "<?xml" not in text
    assert text.startswith("<DataManagementPackage")
    root = etree.fromstring(text.encode("utf-8"))
    assert root.nsmap == {None: DM_NS, "i": XSI_NS}

    def walk(el: etree._Element) -> None:
        assert etree.QName(el).namespace == DM_NS, el.tag
        names = [etree.QName(c).localname for c in el]
        # Ordinal order, as WCF writes it (Python's default str ordering is ordinal).
        assert names == sorted(names), (etree.QName(el).localname, names)
        for c in el:
            walk(c)

    walk(root)
    return root


def test_written_files_are_utf16_datacontract_in_alphabetical_order() -> None:
    root = _assert_datacontract_shape(write_manifest(_rich_manifest(), package_version=2))
    entity = root.find(f"{{{DM_NS}}}PackageEntityList/{{{DM_NS}}}DataManagementPackageEntityData")
    names = [etree.QName(c).localname for c in entity]
    assert names[:3] == ["DefaultRefreshType", "Disable", "EntityMapList"]
    assert names[-2:] == ["TargetEntity", "ValidationStatus"]
    # Lists keep their order (they are collections, not contracts).
    maps = entity.find(f"{{{DM_NS}}}EntityMapList")
    assert [m.findtext(f"{{{DM_NS}}}EntityField") for m in maps] == ["ITEMNUMBER", "QTY"]
    transforms = entity.find(f"{{{DM_NS}}}EntityTransformList")
    assert [etree.QName(t).localname for t in transforms] == ["EntityTransform", "EntityTransform"]
    assert [t.findtext(f"{{{DM_NS}}}SequenceNumber") for t in transforms] == ["1", "2"]
    # Nulls are i:nil, empty strings are empty elements.
    xml_field = maps[1].find(f"{{{DM_NS}}}XMLField")
    assert xml_field.get(f"{{{XSI_NS}}}nil") == "true"
    _assert_datacontract_shape(write_package_header(PackageHeader(description=None)))


def test_version_1_omits_version_2_elements() -> None:
    v1 = write_manifest(_rich_manifest(), package_version=1).decode("utf-16")
    v2 = write_manifest(_rich_manifest(), package_version=2).decode("utf-16")
    for element in (
        "DefaultRefreshType",
        "Disable",
        "QueryData",
        "QueryFilter",
        "TargetEntity",
        "ProjectCategory",
        "RulesData",
    ):
        assert f"<{element}" not in v1, element
        assert f"<{element}" in v2, element


def test_nil_reads_as_none_and_empty_as_empty_string() -> None:
    data = (
        f'<DataManagementPackageManifest xmlns:i="{XSI_NS}" xmlns="{DM_NS}">'
        '<DefinitionGroupName>G</DefinitionGroupName><Description i:nil="true" />'
        "<PackageEntityList><DataManagementPackageEntityData>"
        "<EntityName>E</EntityName><InputFilePath i:nil='true'/><SampleFilePath/>"
        "</DataManagementPackageEntityData></PackageEntityList></DataManagementPackageManifest>"
    ).encode()
    m = parse_manifest(data)
    assert m.description is None
    assert m.entities[0].input_file_path is None
    assert m.entities[0].sample_file_path == ""


def test_manifest_without_namespace_is_accepted() -> None:
    data = (
        b"<DataManagementPackageManifest><DefinitionGroupName>G</DefinitionGroupName><PackageEntityList>"
        b"<DataManagementPackageEntityData><EntityName>Currencies</EntityName><ExecutionUnit> 2 </ExecutionUnit>"
        b"</DataManagementPackageEntityData></PackageEntityList></DataManagementPackageManifest>"
    )
    (e,) = parse_manifest(data).entities
    assert (e.entity_name, e.execution_unit) == ("Currencies", 2)


def test_ordered_entities_sorts_numerically_and_stably() -> None:
    def ent(name: str, unit: int, level: int, seq: int) -> ManifestEntity:
        return ManifestEntity(
            entity_name=name, execution_unit=unit, level_in_execution_unit=level, sequence_in_level=seq
        )

    m = Manifest(
        definition_group_name="G",
        entities=[
            ent("c", 2, 1, 1),
            ent("b", 1, 10, 1),
            ent("a", 1, 9, 5),
            ent("d", 1, 9, 10),
            ent("e", 1, 9, 10),
        ],
    )
    assert [e.entity_name for e in ordered_entities(m)] == ["a", "d", "e", "b", "c"]


@pytest.mark.parametrize(
    "data,message",
    [
        (b"not xml at all", "not well-formed"),
        (b"<Other/>", "expected <DataManagementPackageManifest>"),
        (
            b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<DataManagementPackageManifest><DefinitionGroupName>&x;</DefinitionGroupName></DataManagementPackageManifest>",
            "DTD",
        ),
        (
            b"<DataManagementPackageManifest><PackageEntityList><DataManagementPackageEntityData>"
            b"<EntityName>E</EntityName><ExecutionUnit>one</ExecutionUnit>"
            b"</DataManagementPackageEntityData></PackageEntityList></DataManagementPackageManifest>",
            "ExecutionUnit is 'one'",
        ),
        (
            b"<DataManagementPackageManifest><PackageEntityList><DataManagementPackageEntityData>"
            b"<Disable>maybe</Disable><EntityName>E</EntityName>"
            b"</DataManagementPackageEntityData></PackageEntityList></DataManagementPackageManifest>",
            "Disable is 'maybe'",
        ),
        (
            b"<DataManagementPackageManifest><PackageEntityList><DataManagementPackageEntityData>"
            b"</DataManagementPackageEntityData></PackageEntityList></DataManagementPackageManifest>",
            "has no EntityName",
        ),
        (b"\xff\xfe<\x00\x00\xd8", "not valid UTF-16-LE"),
    ],
)
def test_bad_manifests_raise_format_error(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_manifest(data)


def test_billion_laughs_is_refused_not_expanded() -> None:
    lol = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
            for i in range(1, 10)
        )
        + b"]><DataManagementPackageHeader><Description>&lol9;</Description></DataManagementPackageHeader>"
    )
    with pytest.raises(FormatError, match="DTD"):
        parse_package_header(lol)


def test_writer_rejects_characters_xml_cannot_carry() -> None:
    with pytest.raises(ValueError, match="control character"):
        write_package_header(PackageHeader(description="bell\x07"))


# Value conversions (issue 12) ------------------------------------------------------------------------------


def test_field_conversions_are_written_and_read_back_as_pairs() -> None:
    conversions = [EntityFieldConversion.of("Ja", "Yes"), EntityFieldConversion.of("", "No")]
    m = Manifest(
        definition_group_name="G",
        entities=[
            ManifestEntity(
                entity_name="E",
                entity_maps=[
                    EntityMap(
                        xml_field="Aktiv", entity_field="ACTIVE", entity_field_conversion_list=conversions
                    )
                ],
            )
        ],
    )
    data = write_manifest(m)
    text = data[2:].decode("utf-16-le")
    assert (
        "<EntityFieldConversionList><EntityFieldConversion><SourceValue>Ja</SourceValue>"
        "<TargetValue>Yes</TargetValue></EntityFieldConversion>"
    ) in text
    assert "<SourceValue />" in text  # an empty value is an empty element, not nil
    back = parse_manifest(data).entities[0].entity_maps[0]
    assert back.conversions("E") == [("Ja", "Yes"), ("", "No")]


def test_field_conversions_read_other_spellings_and_refuse_unknown_entries() -> None:
    def manifest(entry: str) -> bytes:
        return (
            f'<DataManagementPackageManifest xmlns="{DM_NS}" xmlns:i="{XSI_NS}"><PackageEntityList>'
            "<DataManagementPackageEntityData><EntityName>E</EntityName><EntityMapList><EntityMap>"
            "<EntityField>ACTIVE</EntityField><XMLField>Aktiv</XMLField>"
            f"<EntityFieldConversionList>{entry}</EntityFieldConversionList>"
            "</EntityMap></EntityMapList></DataManagementPackageEntityData></PackageEntityList>"
            "</DataManagementPackageManifest>"
        ).encode()

    spelled = "<Conv><FromValue>J</FromValue><ToValue i:nil='true'/></Conv>"
    assert parse_manifest(manifest(spelled)).entities[0].entity_maps[0].conversions("E") == [("J", "")]
    odd = parse_manifest(manifest("<Conv><Left>J</Left><Right>Yes</Right></Conv>")).entities[0].entity_maps[0]
    with pytest.raises(
        FormatError, match=r"E: EntityFieldConversionList entry #1 \(Left, Right\) has no SourceValue"
    ):
        odd.conversions("E")


def test_real_manifests_carry_no_conversions(d365: Path) -> None:
    # What D365 publishes: every EntityFieldConversionList is i:nil (see CONVERSION_SOURCE).
    for folder in (V1, V2):
        manifest = parse_manifest(_read(d365, folder, "Manifest.xml"))
        assert all(m.conversions("x") == [] for e in manifest.entities for m in e.entity_maps)
