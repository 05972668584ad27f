"""Read and write Manifest.xml and PackageHeader.xml exactly as Dynamics 365 data packages carry them.

D365 writes both files with the WCF DataContractSerializer: UTF-16LE with a BOM, no XML declaration,
the DataManagement default namespace, `i:nil="true"` for nulls, and child elements in ordinal
(alphabetical) order. Tools such as RIS rewrite them as UTF-8, people indent them, and hand-written
manifests put elements in any order. So reading is lenient (any of those encodings, any order,
elements matched by local name, unknown elements ignored) and writing is exact (the bytes D365
itself produces; see PROTOCOL.md section 5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from shared.errors import FormatError
from shared.formats.xml_safety import describe_syntax_error, make_parser

DM_NS = "http://schemas.microsoft.com/dynamics/2015/01/DataManagement"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_NIL = f"{{{XSI_NS}}}nil"

MANIFEST_TYPE = (
    "Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization.DataManagementPackageManifest"
)
PACKAGE_TYPE = "DefinitionGroup"

MANIFEST_ROOT = "DataManagementPackageManifest"
HEADER_ROOT = "DataManagementPackageHeader"
ENTITY_ELEMENT = "DataManagementPackageEntityData"
MAP_ELEMENT = "EntityMap"
# No published D365 package carries a non-nil EntityTransformList or EntityFieldConversionList, so
# the item element names below follow the EntityMapList/EntityMap pattern. Reading does not depend
# on them: list items are taken by position, whatever their name or namespace.
TRANSFORM_ELEMENT = "EntityTransform"
CONVERSION_ELEMENT = "EntityFieldConversion"
# The two values of a conversion entry, as we write them. What is published about the list (searched
# 2026-11: public code and docs) shows it only empty: `<EntityFieldConversionList i:nil="true" />` in
# every EntityMap of the real manifests in /work/shared/fixtures/d365 (Itaneo/d365fo-data-migration
# Definition/CustCustomerBaseEntity/Manifest.xml, 194 maps; microsoft/Dynamics-AX-Integration
# usmf_asset-major-types-01.zip), in Itaneo/d365fo-data-migration docs/entity-authoring-guide.md
# ("Optional conversion rules; set to i:nil=\"true\" when not needed") and in other hand-built
# manifests. No instance with entries and no schema of an entry was found, so these names are ours;
# reading also takes the other spellings below, and refuses an entry it cannot read rather than
# importing unconverted values.
CONVERSION_SOURCE = "SourceValue"
CONVERSION_TARGET = "TargetValue"
_CONVERSION_SPELLINGS = (
    (CONVERSION_SOURCE, CONVERSION_TARGET),
    ("FromValue", "ToValue"),
    ("From", "To"),
    ("Value", "ConvertedValue"),
)

# A manifest with hundreds of entities and their maps is a few MB; anything far bigger is not a
# manifest. The reader enforces this before parsing.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass
class PackageHeader:
    description: str | None = None
    manifest_type: str = MANIFEST_TYPE
    package_type: str = PACKAGE_TYPE
    package_version: int = 2


@dataclass
class EntityFieldConversion:
    """One entry of an EntityFieldConversionList, kept as its child elements by name.

    Microsoft does not publish this list's schema and no real package carries one, so the entry
    is preserved generically rather than guessed into typed fields.
    """

    values: dict[str, str | None] = field(default_factory=dict)
    element_name: str = CONVERSION_ELEMENT

    @classmethod
    def of(cls, source: str, target: str) -> EntityFieldConversion:
        """The entry we write for "source value -> target value"."""
        return cls(values={CONVERSION_SOURCE: source, CONVERSION_TARGET: target})

    def pair(self) -> tuple[str, str] | None:
        """(source value, target value), or None when the entry has none of the known spellings.
        A nil value reads as "" (an empty value)."""
        folded = {k.casefold(): v for k, v in self.values.items()}
        for source, target in _CONVERSION_SPELLINGS:
            if source.casefold() in folded and target.casefold() in folded:
                return folded[source.casefold()] or "", folded[target.casefold()] or ""
        return None


@dataclass
class EntityMap:
    xml_field: str | None = None
    entity_field: str | None = None
    array_index: int = 0
    is_auto_default: bool = False
    is_auto_generated: bool = False
    is_default_value_equal_null: bool = False
    use_text_qualifier: bool = False
    entity_field_conversion_list: list[EntityFieldConversion] = field(default_factory=list)

    def conversions(self, what: str) -> list[tuple[str, str]]:
        """The map's value conversions as (source value, target value) pairs. Raises FormatError for an
        entry without a source and a target value (see CONVERSION_SOURCE)."""
        pairs = []
        for i, entry in enumerate(self.entity_field_conversion_list):
            pair = entry.pair()
            if pair is None:
                found = ", ".join(entry.values) or "no elements"
                raise FormatError(
                    f"{what}: EntityFieldConversionList entry #{i + 1} ({found}) has no "
                    f"{CONVERSION_SOURCE} and {CONVERSION_TARGET}; its conversion cannot be applied"
                )
            pairs.append(pair)
        return pairs


@dataclass
class EntityTransform:
    sequence_number: int = 0
    xslt_file_name: str | None = None
    xslt_resource_file_name: str | None = None


@dataclass
class ManifestEntity:
    # Defaults are what D365 writes for a plain import entity (see the real v2 fixture), so that a
    # manifest we build from scratch is accepted by D365: its enum members cannot be nil.
    entity_name: str
    input_file_path: str | None = None
    source_format: str | None = None
    excel_sheet_name: str | None = ""
    execution_unit: int = 1
    level_in_execution_unit: int = 1
    sequence_in_level: int = 1
    fail_execution_unit_on_error: bool = False
    fail_level_on_error: bool = False
    default_refresh_type: str = "FullPush"
    disable: bool = False
    entity_maps: list[EntityMap] = field(default_factory=list)
    transforms: list[EntityTransform] = field(default_factory=list)
    query_data: str | None = None
    query_filter: str | None = None
    target_entity: str | None = None
    run_business_logic: bool = True
    run_business_validation: bool = True
    sample_file_path: str | None = ""
    validation_status: str = "Yes"


@dataclass
class Manifest:
    definition_group_name: str
    description: str | None = None
    project_category: str | None = "0"
    rules_data: str | None = None
    entities: list[ManifestEntity] = field(default_factory=list)


def ordered_entities(manifest: Manifest) -> list[ManifestEntity]:
    """Entities in D365 execution order: ExecutionUnit, LevelInExecutionUnit, SequenceInLevel.

    The sort is stable, so entities with equal keys keep their manifest order.
    """
    return sorted(
        manifest.entities,
        key=lambda e: (e.execution_unit, e.level_in_execution_unit, e.sequence_in_level),
    )


# --------------------------------------------------------------------------------------------
# Reading


def _parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers are not safe to share between threads. The options shut
    # every door to external content; a DTD is rejected after parsing (see _parse_root), and since
    # entities are neither loaded nor substituted nothing in it has taken effect by then.
    return make_parser(remove_comments=True, remove_pis=True)


_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
# A DOCTYPE can only sit in the prolog, after the declaration, comments and PIs.
_PROLOG_DOCTYPE = re.compile(r"^\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.DOTALL | re.IGNORECASE)


def _decode(data: bytes, what: str) -> str:
    """Bytes to text, from the BOM when there is one.

    Decoding ourselves (rather than letting libxml2 read the declaration) copes with the common
    .NET mistake of UTF-8 bytes under an `encoding="utf-16"` declaration.
    """
    original = data
    if data.startswith(b"\xff\xfe"):
        encoding, data = "utf-16-le", data[2:]
    elif data.startswith(b"\xfe\xff"):
        encoding, data = "utf-16-be", data[2:]
    elif data.startswith(b"\xef\xbb\xbf"):
        encoding, data = "utf-8", data[3:]
    elif data[:2] == b"<\x00":
        encoding = "utf-16-le"
    elif data[:2] == b"\x00<":
        encoding = "utf-16-be"
    else:
        encoding = "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        # Where, in the file's bytes (the BOM included), not Python's "position N" in the sliced data.
        offset = exc.start + (len(original) - len(data))
        line = data[: exc.start].decode(encoding, "replace").count("\n") + 1
        shown = " ".join(f"0x{b:02X}" for b in data[exc.start : exc.end][:4])
        raise FormatError(
            f"{what} is not valid {encoding.upper()} text: the byte(s) {shown} at byte offset {offset} "
            f"(line {line}) cannot be decoded"
        ) from None
    return _XML_DECL.sub("", text, count=1)


def _parse_root(data: bytes, what: str, root_name: str) -> etree._Element:
    if len(data) > MAX_MANIFEST_BYTES:
        raise FormatError(f"{what} is larger than {MAX_MANIFEST_BYTES} bytes")
    text = _decode(data, what)
    # Refuse a DTD before libxml2 reads its declarations at all (entity bombs, external ids).
    if _PROLOG_DOCTYPE.match(text):
        raise FormatError(f"{what} contains a DTD (<!DOCTYPE>); DTDs are not allowed")
    parser = _parser()
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        # The cause and its line (the text is re-encoded, but its lines are the file's), not libxml2's raw text.
        reason = describe_syntax_error(exc, parser.error_log)
        raise FormatError(
            reason.replace("the XML is not well-formed", f"{what} is not well-formed XML", 1)
        ) from None
    if root.getroottree().docinfo.doctype:
        raise FormatError(f"{what} contains a DTD (<!DOCTYPE>); DTDs are not allowed")
    if etree.QName(root).localname != root_name:
        raise FormatError(f"{what} has root element <{etree.QName(root).localname}>; expected <{root_name}>")
    return root


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _elements(el: etree._Element) -> Iterable[etree._Element]:
    # Comments and PIs are removed by the parser; entity references cannot exist without a DTD.
    return (c for c in el if isinstance(c.tag, str))


def _children(el: etree._Element) -> dict[str, etree._Element]:
    """Child elements by local name; any namespace, any order. The first occurrence wins."""
    out: dict[str, etree._Element] = {}
    for child in _elements(el):
        out.setdefault(_local(child), child)
    return out


def _is_nil(el: etree._Element) -> bool:
    return el.get(_NIL, "").strip().lower() in ("true", "1")


def _text(kids: dict[str, etree._Element], name: str, default: str | None = None) -> str | None:
    el = kids.get(name)
    if el is None:
        return default
    if _is_nil(el):
        return None
    return el.text or ""


def _required_text(kids: dict[str, etree._Element], name: str, what: str) -> str:
    value = _text(kids, name)
    if value is None or not value.strip():
        raise FormatError(f"{what} has no {name}")
    return value


def _int(kids: dict[str, etree._Element], name: str, default: int, what: str) -> int:
    value = _text(kids, name)
    if value is None or not value.strip():
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise FormatError(f"{what}: {name} is '{value.strip()}', not a whole number") from None


def _bool(kids: dict[str, etree._Element], name: str, default: bool, what: str) -> bool:
    value = _text(kids, name)
    if value is None or not value.strip():
        return default
    v = value.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise FormatError(f"{what}: {name} is '{value.strip()}', not true or false")


def _list_items(kids: dict[str, etree._Element], name: str) -> list[etree._Element]:
    el = kids.get(name)
    if el is None or _is_nil(el):
        return []
    return list(_elements(el))


def _parse_conversion(el: etree._Element) -> EntityFieldConversion:
    values: dict[str, str | None] = {}
    for child in _elements(el):
        values[_local(child)] = None if _is_nil(child) else "".join(child.itertext())
    return EntityFieldConversion(values=values, element_name=_local(el))


def _parse_map(el: etree._Element, what: str) -> EntityMap:
    k = _children(el)
    return EntityMap(
        xml_field=_text(k, "XMLField"),
        entity_field=_text(k, "EntityField"),
        array_index=_int(k, "ArrayIndex", 0, what),
        is_auto_default=_bool(k, "IsAutoDefault", False, what),
        is_auto_generated=_bool(k, "IsAutoGenerated", False, what),
        is_default_value_equal_null=_bool(k, "IsDefaultValueEqualNull", False, what),
        use_text_qualifier=_bool(k, "UseTextQualifier", False, what),
        entity_field_conversion_list=[
            _parse_conversion(c) for c in _list_items(k, "EntityFieldConversionList")
        ],
    )


def _parse_transform(el: etree._Element, what: str) -> EntityTransform:
    k = _children(el)
    return EntityTransform(
        sequence_number=_int(k, "SequenceNumber", 0, what),
        xslt_file_name=_text(k, "XsltFileName"),
        xslt_resource_file_name=_text(k, "XsltResourceFileName"),
    )


def _parse_entity(el: etree._Element, index: int) -> ManifestEntity:
    k = _children(el)
    name = _required_text(k, "EntityName", f"Manifest.xml entity #{index + 1}")
    what = f"Manifest.xml entity '{name}'"
    return ManifestEntity(
        entity_name=name,
        input_file_path=_text(k, "InputFilePath"),
        source_format=_text(k, "SourceFormat"),
        excel_sheet_name=_text(k, "ExcelSheetName", ""),
        execution_unit=_int(k, "ExecutionUnit", 1, what),
        level_in_execution_unit=_int(k, "LevelInExecutionUnit", 1, what),
        sequence_in_level=_int(k, "SequenceInLevel", 1, what),
        fail_execution_unit_on_error=_bool(k, "FailExecutionUnitOnError", False, what),
        fail_level_on_error=_bool(k, "FailLevelOnError", False, what),
        default_refresh_type=_text(k, "DefaultRefreshType") or "FullPush",
        disable=_bool(k, "Disable", False, what),
        entity_maps=[
            _parse_map(m, f"{what} EntityMap #{i + 1}") for i, m in enumerate(_list_items(k, "EntityMapList"))
        ],
        transforms=[
            _parse_transform(t, f"{what} transform #{i + 1}")
            for i, t in enumerate(_list_items(k, "EntityTransformList"))
        ],
        query_data=_text(k, "QueryData"),
        query_filter=_text(k, "QueryFilter"),
        target_entity=_text(k, "TargetEntity"),
        run_business_logic=_bool(k, "RunBusinessLogic", True, what),
        run_business_validation=_bool(k, "RunBusinessValidation", True, what),
        sample_file_path=_text(k, "SampleFilePath", ""),
        validation_status=_text(k, "ValidationStatus") or "Yes",
    )


def parse_manifest(data: bytes) -> Manifest:
    """Parse Manifest.xml bytes (UTF-16 or UTF-8, with or without BOM/declaration, any element order)."""
    root = _parse_root(data, "Manifest.xml", MANIFEST_ROOT)
    k = _children(root)
    return Manifest(
        definition_group_name=_text(k, "DefinitionGroupName") or "",
        description=_text(k, "Description"),
        project_category=_text(k, "ProjectCategory", "0"),
        rules_data=_text(k, "RulesData"),
        entities=[_parse_entity(e, i) for i, e in enumerate(_list_items(k, "PackageEntityList"))],
    )


def parse_package_header(data: bytes) -> PackageHeader:
    """Parse PackageHeader.xml bytes (same encodings and leniency as parse_manifest)."""
    root = _parse_root(data, "PackageHeader.xml", HEADER_ROOT)
    k = _children(root)
    return PackageHeader(
        description=_text(k, "Description"),
        manifest_type=_text(k, "ManifestType") or MANIFEST_TYPE,
        package_type=_text(k, "PackageType") or PACKAGE_TYPE,
        package_version=_int(k, "PackageVersion", 1, "PackageHeader.xml"),
    )


# --------------------------------------------------------------------------------------------
# Writing
#
# A hand-written serializer rather than lxml: DataContractSerializer output has details lxml does
# not produce (`<X />` with a space, `xmlns:i` declared before the default namespace), and
# writing them ourselves makes our packages byte-identical to D365's.

_Value = str | None | list["_Node"]


@dataclass
class _Node:
    name: str
    value: _Value  # None: i:nil; str: text ("" is an empty element); list: child elements
    ordered: bool = True  # a data contract (children sorted by name) vs a collection (kept in order)


_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _escape(text: str) -> str:
    if _INVALID_XML_CHARS.search(text):
        raise ValueError(f"{text!r} contains a control character that XML 1.0 cannot carry")
    # CR is written as a character reference so that it survives the parser's line-end
    # normalization and the value reads back unchanged.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")


def _b(value: bool) -> str:
    return "true" if value else "false"


def _serialize(node: _Node, out: list[str], root_attrs: str = "") -> None:
    if node.value is None:
        out.append(f'<{node.name}{root_attrs} i:nil="true" />')
    elif isinstance(node.value, str):
        if node.value == "":
            out.append(f"<{node.name}{root_attrs} />")
        else:
            out.append(f"<{node.name}{root_attrs}>{_escape(node.value)}</{node.name}>")
    else:
        children = sorted(node.value, key=lambda n: n.name) if node.ordered else node.value
        out.append(f"<{node.name}{root_attrs}>")
        for child in children:
            _serialize(child, out)
        out.append(f"</{node.name}>")


def _document(root: _Node) -> bytes:
    out: list[str] = []
    _serialize(root, out, root_attrs=f' xmlns:i="{XSI_NS}" xmlns="{DM_NS}"')
    # The BOM plus UTF-16LE is what D365 writes; there is deliberately no XML declaration.
    return b"\xff\xfe" + "".join(out).encode("utf-16-le")


def _collection(name: str, items: list[_Node]) -> _Node:
    # D365 writes an empty list as nil (EntityTransformList, EntityFieldConversionList).
    return _Node(name, items if items else None, ordered=False)


def _conversion_node(c: EntityFieldConversion) -> _Node:
    return _Node(c.element_name, [_Node(k, v) for k, v in c.values.items()])


def _map_node(m: EntityMap) -> _Node:
    return _Node(
        MAP_ELEMENT,
        [
            _Node("ArrayIndex", str(m.array_index)),
            _Node("EntityField", m.entity_field),
            _collection(
                "EntityFieldConversionList", [_conversion_node(c) for c in m.entity_field_conversion_list]
            ),
            _Node("IsAutoDefault", _b(m.is_auto_default)),
            _Node("IsAutoGenerated", _b(m.is_auto_generated)),
            _Node("IsDefaultValueEqualNull", _b(m.is_default_value_equal_null)),
            _Node("UseTextQualifier", _b(m.use_text_qualifier)),
            _Node("XMLField", m.xml_field),
        ],
    )


def _transform_node(t: EntityTransform) -> _Node:
    return _Node(
        TRANSFORM_ELEMENT,
        [
            _Node("SequenceNumber", str(t.sequence_number)),
            _Node("XsltFileName", t.xslt_file_name),
            _Node("XsltResourceFileName", t.xslt_resource_file_name),
        ],
    )


def _entity_node(e: ManifestEntity, version: int) -> _Node:
    children = [
        _collection("EntityMapList", [_map_node(m) for m in e.entity_maps]),
        _Node("EntityName", e.entity_name),
        _collection("EntityTransformList", [_transform_node(t) for t in e.transforms]),
        _Node("ExcelSheetName", e.excel_sheet_name),
        _Node("ExecutionUnit", str(e.execution_unit)),
        _Node("FailExecutionUnitOnError", _b(e.fail_execution_unit_on_error)),
        _Node("FailLevelOnError", _b(e.fail_level_on_error)),
        _Node("InputFilePath", e.input_file_path),
        _Node("LevelInExecutionUnit", str(e.level_in_execution_unit)),
        _Node("RunBusinessLogic", _b(e.run_business_logic)),
        _Node("RunBusinessValidation", _b(e.run_business_validation)),
        _Node("SampleFilePath", e.sample_file_path),
        _Node("SequenceInLevel", str(e.sequence_in_level)),
        _Node("SourceFormat", e.source_format),
        _Node("ValidationStatus", e.validation_status),
    ]
    if version >= 2:
        children += [
            _Node("DefaultRefreshType", e.default_refresh_type),
            _Node("Disable", _b(e.disable)),
            _Node("QueryData", e.query_data),
            _Node("QueryFilter", e.query_filter),
            _Node("TargetEntity", e.target_entity),
        ]
    return _Node(ENTITY_ELEMENT, children)


def write_manifest(manifest: Manifest, *, package_version: int = 2) -> bytes:
    """Manifest.xml bytes as D365 writes them: UTF-16LE + BOM, no declaration, alphabetical elements.

    `package_version` must match the PackageHeader: version 2 adds DefaultRefreshType, Disable,
    QueryData, QueryFilter, TargetEntity, ProjectCategory and RulesData.
    """
    children = [
        _Node("DefinitionGroupName", manifest.definition_group_name),
        _Node("Description", manifest.description),
        _Node(
            "PackageEntityList", [_entity_node(e, package_version) for e in manifest.entities], ordered=False
        ),
    ]
    if package_version >= 2:
        children += [
            _Node("ProjectCategory", manifest.project_category),
            _Node("RulesData", manifest.rules_data),
        ]
    return _document(_Node(MANIFEST_ROOT, children))


def write_package_header(header: PackageHeader) -> bytes:
    """PackageHeader.xml bytes as D365 writes them."""
    return _document(
        _Node(
            HEADER_ROOT,
            [
                _Node("Description", header.description),
                _Node("ManifestType", header.manifest_type),
                _Node("PackageType", header.package_type),
                _Node("PackageVersion", str(header.package_version)),
            ],
        )
    )
