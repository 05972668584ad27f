"""The hostile corpus: a builder for every class of hostile input the readers and the import must survive.

Nothing large is committed. Every input is generated on demand as a stream of byte chunks, so a file that
expands to 300 MB never exists in memory: text inputs are yielded piece by piece, and the parts of an
.xlsx package are deflated while they are written (the package itself stays small).

Used by tests/unit/formats (each reader against its classes), tests/e2e/test_hostile_files.py (through the
real host) and bench/bench_hostile_memory.py (the peak memory of each input in a fresh process).

`CASES` lists the source-file classes with the status and a fragment of the reason the import must end
with; the package, XML-security and XSLT classes are builders here and cases in the e2e test.
"""

from __future__ import annotations

import io
import itertools
import random
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
PRE_PROCESSING_ERROR = "PreProcessingError"
PROCESSED = "Processed"

# The entity every case is read as (tests.support.packages.simple_entity): CODE (key), NAME, AMOUNT.
HEADER = ("CODE", "NAME", "AMOUNT")


# --- generic helpers -----------------------------------------------------------------------------------
def join(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)


def write(chunks: Iterable[bytes], path: Path) -> int:
    """Write the chunks to `path`; returns the size in bytes."""
    size = 0
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
    return size


def repeat(unit: bytes, total: int, block: int = MiB) -> Iterator[bytes]:
    """`unit` repeated to `total` bytes, in blocks of about `block` bytes."""
    piece = unit * max(1, block // len(unit))
    sent = 0
    while sent < total:
        out = piece[: total - sent]
        sent += len(out)
        yield out


def noise(total: int, seed: int = 5) -> Iterator[bytes]:
    """Letters and digits that deflate about 140:1 when repeated in 16 KiB blocks (below zip-bomb ratios)."""
    rng = random.Random(seed)
    block = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16384))
    yield from repeat(block, total, block=16384)


# --- XLSX: a minimal SpreadsheetML package written by hand, so any part can be made hostile --------------
MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
DOC_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"

_CONTENT_TYPES = b"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>
<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>
</Types>"""  # noqa: E501 - XML text

_ROOT_RELS = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="{PKG_REL_NS}">
<Relationship Id="rId1" Type="{DOC_REL_NS}/officeDocument" Target="xl/workbook.xml"/>
</Relationships>""".encode()

_WORKBOOK = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="{MAIN_NS}" xmlns:r="{DOC_REL_NS}">
<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets>
</workbook>""".encode()

_WORKBOOK_RELS = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="{PKG_REL_NS}">
<Relationship Id="rId1" Type="{DOC_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" Type="{DOC_REL_NS}/sharedStrings" Target="sharedStrings.xml"/>
<Relationship Id="rId3" Type="{DOC_REL_NS}/styles" Target="styles.xml"/>
</Relationships>""".encode()

# Style 0: general; style 1: a date (built-in number format 14).
_STYLES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="{MAIN_NS}"><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14"/></cellXfs></styleSheet>""".encode()


def column_letters(index: int) -> str:
    """1 -> A, 27 -> AA, 16384 -> XFD."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def inline_cell(ref: str, text: str) -> bytes:
    return f'<c r="{ref}" t="inlineStr"><is><t>{_escape(text)}</t></is></c>'.encode()


def row_xml(number: int, values: Iterable[str | None], *, first_column: int = 1) -> bytes:
    """A <row> of inline-string cells; None leaves a cell out."""
    cells = b"".join(
        inline_cell(f"{column_letters(first_column + i)}{number}", v)
        for i, v in enumerate(values)
        if v is not None
    )
    return b'<row r="%d">%s</row>' % (number, cells)


def xlsx(
    rows: Iterable[bytes],
    *,
    shared_strings: Iterable[bytes] = (),
    styles: bytes = _STYLES,
) -> bytes:
    """An .xlsx package whose first sheet holds `rows` (raw <row> XML) and whose shared-strings part holds
    the raw `<si>` items of `shared_strings`. Parts are streamed into the deflater."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        zf.writestr("_rels/.rels", _ROOT_RELS)
        zf.writestr("xl/workbook.xml", _WORKBOOK)
        zf.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        zf.writestr("xl/styles.xml", styles)
        with zf.open("xl/sharedStrings.xml", "w", force_zip64=True) as part:
            part.write(f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN_NS}">'.encode())
            for chunk in shared_strings:
                part.write(chunk)
            part.write(b"</sst>")
        with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as part:
            part.write(
                f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN_NS}"><sheetData>'.encode()
            )
            for chunk in rows:
                part.write(chunk)
            part.write(b"</sheetData></worksheet>")
    return buf.getvalue()


def xlsx_normal(rows: int) -> bytes:
    """A well-formed workbook of `rows` data rows (CODE, NAME, AMOUNT), NAME through shared strings."""
    header = row_xml(1, HEADER)

    def data_rows() -> Iterator[bytes]:
        for i in range(rows):
            n = i + 2
            yield (
                b'<row r="%d"><c r="A%d" t="inlineStr"><is><t>N%d</t></is></c>'
                b'<c r="B%d" t="s"><v>%d</v></c><c r="C%d"><v>%d.5</v></c></row>'
                % (n, n, i, n, i % 1000, n, i)
            )

    strings = (b"<si><t>name %d</t></si>" % i for i in range(1000))
    return xlsx(itertools.chain([header], data_rows()), shared_strings=strings)


def xlsx_shared_strings_bomb(expanded: int = 300 * MiB, string_chars: int = 30_000) -> bytes:
    """Shared strings that expand to `expanded` bytes (each string `string_chars` long, under the cell
    limit), in a package of a few hundred KB; the sheet uses two of them."""
    item = b"<si><t>" + b"x" * string_chars + b"</t></si>"
    strings = repeat(item, expanded - expanded % len(item), block=len(item) * max(1, MiB // len(item)))
    rows = [row_xml(1, HEADER), b'<row r="2"><c r="A2" t="s"><v>0</v></c><c r="B2" t="s"><v>1</v></c></row>']
    return xlsx(rows, shared_strings=strings)


def xlsx_shared_strings_count(count: int = 5_000_000) -> bytes:
    """Millions of one-character shared strings: a count bomb rather than a size bomb."""
    return xlsx([row_xml(1, HEADER)], shared_strings=repeat(b"<si><t>a</t></si>", count * 17))


def xlsx_huge_row_index(row: int = 10**12) -> bytes:
    """A 2 KB workbook whose second data row is numbered `row`: a reader that fills the gap walks it."""
    return xlsx([row_xml(1, HEADER), row_xml(2, ("R1", "one", "1")), row_xml(row, ("R2", "two", "2"))])


def xlsx_wide_row(columns: int = 16_384) -> bytes:
    """A header row with a value in every one of Excel's 16,384 columns."""
    return xlsx([row_xml(1, [f"C{i}" for i in range(columns)])])


def xlsx_far_right_empty_cells(rows: int = 2000) -> bytes:
    """Rows whose last cell is an empty styled cell in column XFD (16,384): a reader that pads each row to
    its last cell builds 16,384 values per row. The data itself is ordinary and must be Processed."""

    def data_rows() -> Iterator[bytes]:
        yield row_xml(1, HEADER)
        for n in range(2, rows + 2):
            yield row_xml(n, (f"W{n}", "wide", "1"))[:-6] + b'<c r="XFD%d" s="0"/></row>' % n

    return xlsx(data_rows())


def xlsx_huge_cell(chars: int = 3 * MiB) -> bytes:
    """One inline-string cell of `chars` characters (over the 1 MiB cell limit, under the 4 MiB bound on a row)."""
    return xlsx([row_xml(1, HEADER), row_xml(2, ("BIG", "x" * chars, "1"))])


# --- XML ------------------------------------------------------------------------------------------------
def xml_records(records: Iterable[bytes]) -> Iterator[bytes]:
    yield b'<?xml version="1.0" encoding="utf-8"?>\n<Document>\n'
    yield from records
    yield b"</Document>\n"


def xml_normal(records: int) -> Iterator[bytes]:
    def blocks() -> Iterator[bytes]:
        for start in range(0, records, 1000):
            yield b"".join(
                b"<ENT><CODE>N%d</CODE><NAME>name %d</NAME><AMOUNT>%d.5</AMOUNT></ENT>\n" % (i, i, i)
                for i in range(start, min(records, start + 1000))
            )

    return xml_records(blocks())


def xml_attribute_normal(records: int) -> Iterator[bytes]:
    def blocks() -> Iterator[bytes]:
        for start in range(0, records, 1000):
            yield b"".join(
                b'<ENT CODE="N%d" NAME="name %d" AMOUNT="%d.5"/>\n' % (i, i, i)
                for i in range(start, min(records, start + 1000))
            )

    return xml_records(blocks())


def xml_huge_text(chars: int = 3_000_000) -> Iterator[bytes]:
    """A field of `chars` characters: over the 1 MiB field limit, under the 4 MiB bound on a record."""
    return xml_records([b"<ENT><CODE>T1</CODE><NAME>", *repeat(b"x", chars), b"</NAME></ENT>\n"])


def xml_many_big_fields(fields: int = 100, chars: int = 1_000_000) -> Iterator[bytes]:
    """One record of `fields` fields of `chars` characters each: every field is under the field limit,
    the record (100 MB) is not; a reader that checks only whole records would hold it all first."""

    def record() -> Iterator[bytes]:
        yield b"<ENT><CODE>M1</CODE>"
        value = b"y" * chars
        for i in range(fields):
            yield b"<F%d>%s</F%d>" % (i, value, i)
        yield b"</ENT>\n"

    return xml_records(record())


def xml_huge_attribute(chars: int = 3_000_000) -> Iterator[bytes]:
    return xml_records([b'<ENT CODE="A1" NAME="', *repeat(b"x", chars), b'"/>\n'])


def xml_many_big_attributes(attributes: int = 100, chars: int = 1_000_000) -> Iterator[bytes]:
    """One start tag of 100 MB: 100 attributes of 1 MB. libxml2 builds a whole start tag before the
    reader sees any of it, so only a bound on the bytes read per record keeps it out of memory."""

    def record() -> Iterator[bytes]:
        yield b'<ENT CODE="A2"'
        value = b"z" * chars
        for i in range(attributes):
            yield b' F%d="%s"' % (i, value)
        yield b"/>\n"

    return xml_records(record())


def xml_tiny_attributes(total: int = 4 * MiB - 256 * 1024) -> Iterator[bytes]:
    """One start tag of `total` bytes of empty attributes (a0="" a1="" ...), whole within the bound on a
    record's bytes: libxml2 builds a start tag whole before the reader sees it, at about 20 bytes of memory
    per byte of such attributes, so this is the most memory any XML record can take."""

    def record() -> Iterator[bytes]:
        yield b'<ENT CODE="A3"'
        sent = 0
        block = 0
        while sent < total:
            piece = b"".join(b' a%d=""' % i for i in range(block * 10_000, (block + 1) * 10_000))
            piece = piece[: total - sent]
            piece = piece[: piece.rfind(b'""') + 2]  # whole attributes only
            sent += len(piece)
            block += 1
            yield piece
            if len(piece) < 10:
                break
        yield b"/>\n"

    return xml_records(record())


# --- JSON -----------------------------------------------------------------------------------------------
def json_normal(records: int) -> Iterator[bytes]:
    yield b"["
    for start in range(0, records, 1000):
        yield b",".join(
            b'{"CODE":"N%d","NAME":"name %d","AMOUNT":%d.5}' % (i, i, i)
            for i in range(start, min(records, start + 1000))
        ) + (b"," if start + 1000 < records else b"")
    yield b"]"


def json_deep(depth: int = 100_000) -> Iterator[bytes]:
    """A record whose NAME nests `depth` arrays."""
    yield b'[{"CODE":"D1","NAME":'
    yield from repeat(b"[", depth)
    yield from repeat(b"]", depth)
    yield b"}]"


def json_huge_string(chars: int = 50 * MiB) -> Iterator[bytes]:
    yield b'[{"CODE":"S1","NAME":"'
    yield from repeat(b"x", chars)
    yield b'"}]'


def json_big_string(chars: int = 2 * MiB) -> Iterator[bytes]:
    """A string over the 1 MiB field limit but inside the record limit."""
    return json_huge_string(chars)


# --- CSV ------------------------------------------------------------------------------------------------
def csv_normal(rows: int) -> Iterator[bytes]:
    yield b"CODE,NAME,AMOUNT\r\n"
    for start in range(0, rows, 1000):
        yield b"".join(b"N%d,name %d,%d.5\r\n" % (i, i, i) for i in range(start, min(rows, start + 1000)))


def csv_long_line(total: int = 50 * MiB) -> Iterator[bytes]:
    """A 50 MB line of letters without a line end (compresses about 140:1 inside a package)."""
    yield b"CODE,NAME\n"
    yield from noise(total)
    yield b"\n"


def csv_repeated_key(rows: int = 20_000, key: str = "SAME") -> Iterator[bytes]:
    """`rows` rows with one key: the last one (NAME "v{rows-1}") must win, and quickly."""
    yield b"CODE,NAME,AMOUNT\r\n"
    for start in range(0, rows, 1000):
        yield b"".join(b"%s,v%d,%d\r\n" % (key.encode(), i, i) for i in range(start, min(rows, start + 1000)))


# --- XML security (the classes that already held) --------------------------------------------------------
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document><ENT><CODE>B1</CODE><NAME>&lol9;</NAME></ENT></Document>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document><ENT><CODE>X1</CODE><NAME>&xxe;</NAME></ENT></Document>"""

XSLT_DOCUMENT_PASSWD = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><Document><ENT><CODE>D1</CODE>
    <NAME><xsl:value-of select="document('file:///etc/passwd')"/></NAME></ENT></Document></xsl:template>
</xsl:stylesheet>"""

XSLT_INCLUDE_HTTP = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:include href="http://127.0.0.1:9/evil.xsl"/>
  <xsl:template match="/"><Document/></xsl:template>
</xsl:stylesheet>"""

MANIFEST_WITH_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<DataManagementPackageManifest><DefinitionGroupName>&x;</DefinitionGroupName>"
    b"</DataManagementPackageManifest>"
)

GOOD_XML = b"<Document><ENT><CODE>OK1</CODE><NAME>fine</NAME></ENT></Document>"
GOOD_CSV = b"CODE,NAME,AMOUNT\r\nGOOD1,fine,1.5\r\n"


# --- zips -------------------------------------------------------------------------------------------------
def stream_zip(name: str, chunks: Iterable[bytes], extra: list[tuple[str, bytes]]) -> bytes:
    """A zip with the small `extra` entries and one entry `name` deflated from `chunks` as they come."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry, data in extra:
            zf.writestr(entry, data)
        with zf.open(name, "w", force_zip64=True) as w:
            for chunk in chunks:
                w.write(chunk)
    return buf.getvalue()


def zeros(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = b"0" * chunk
    for _ in range(total // chunk):
        yield block


def lying_lines(blocks: int = 10_000) -> Iterator[bytes]:
    """About 70 MB of CSV that deflates well below the bomb ratio."""
    return (b"CODE,NAME,AMOUNT\n" + b"L1,x,1\n" * 1000 for _ in range(blocks))


def patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Make the local and central headers of `name` declare `size` uncompressed bytes."""
    out = bytearray(data)
    encoded = name.encode()
    for signature, size_at, name_len_at, name_at in (
        (b"PK\x03\x04", 22, 26, 30),
        (b"PK\x01\x02", 24, 28, 46),
    ):
        pos = out.find(signature)
        while pos >= 0:
            (name_len,) = struct.unpack_from("<H", out, pos + name_len_at)
            if out[pos + name_at : pos + name_at + name_len] == encoded:
                struct.pack_into("<I", out, pos + size_at, size)
            pos = out.find(signature, pos + 4)
    return bytes(out)


# --- the corpus of source files ------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One hostile source file: its format (a built-in format name), a builder of its bytes, and how the
    import must end. `normal` builds an ordinary file of the same format and about the same size."""

    name: str
    fmt: str
    chunks: Callable[[], Iterable[bytes]]
    reason: str
    status: str = PRE_PROCESSING_ERROR
    normal: Callable[[int], Iterable[bytes]] | None = None

    def data(self) -> bytes:
        return join(self.chunks())


def _one(build: Callable[[], bytes]) -> Callable[[], Iterable[bytes]]:
    return lambda: [build()]


def _normal_xlsx(size: int) -> Iterable[bytes]:
    # About 11 bytes of package per row (measured with xlsx_normal).
    return [xlsx_normal(max(10, size // 11))]


def _normal_text(
    builder: Callable[[int], Iterable[bytes]], row_bytes: int
) -> Callable[[int], Iterable[bytes]]:
    return lambda size: builder(max(10, size // row_bytes))


CASES: tuple[Case, ...] = (
    Case(
        "xlsx-shared-strings-300MB",
        "EXCEL",
        _one(xlsx_shared_strings_bomb),
        "shared strings hold more than",
        normal=_normal_xlsx,
    ),
    Case(
        "xlsx-shared-strings-5M",
        "EXCEL",
        _one(xlsx_shared_strings_count),
        "shared strings",
        normal=_normal_xlsx,
    ),
    Case(
        "xlsx-row-1e12",
        "EXCEL",
        _one(xlsx_huge_row_index),
        "row 1000000000000 is beyond the last row of an Excel sheet (1,048,576)",
        normal=_normal_xlsx,
    ),
    Case(
        "xlsx-16384-columns", "EXCEL", _one(xlsx_wide_row), "the limit is 1,000 columns", normal=_normal_xlsx
    ),
    Case(
        "xlsx-empty-cells-at-XFD",
        "EXCEL",
        _one(xlsx_far_right_empty_cells),
        "",
        status=PROCESSED,
        normal=_normal_xlsx,
    ),
    Case(
        "xlsx-3MB-cell",
        "EXCEL",
        _one(xlsx_huge_cell),
        "characters long; the limit is 1,048,576",
        normal=_normal_xlsx,
    ),
    Case(
        "xml-3MB-text",
        "XML-Element",
        xml_huge_text,
        "field NAME is 3,000,000 characters long; the limit is 1,048,576",
        normal=_normal_text(xml_normal, 70),
    ),
    Case(
        "xml-100-fields-of-1MB",
        "XML-Element",
        xml_many_big_fields,
        "the limit is 4,194,304 bytes (max_record_bytes)",
        normal=_normal_text(xml_normal, 70),
    ),
    Case(
        "xml-3MB-attribute",
        "XML-Attribute",
        xml_huge_attribute,
        "field NAME is 3,000,000 characters long; the limit is 1,048,576",
        normal=_normal_text(xml_attribute_normal, 50),
    ),
    Case(
        "xml-100MB-start-tag",
        "XML-Attribute",
        xml_many_big_attributes,
        "the limit is 4,194,304 bytes (max_record_bytes)",
        normal=_normal_text(xml_attribute_normal, 50),
    ),
    Case(
        "xml-4MB-of-empty-attributes",
        "XML-Attribute",
        xml_tiny_attributes,
        "attributes; the limit is 1000 (max_columns)",
        normal=_normal_text(xml_attribute_normal, 50),
    ),
    Case(
        "json-100k-deep",
        "JSON",
        json_deep,
        "nests arrays/objects more than 64 levels deep",
        normal=_normal_text(json_normal, 45),
    ),
    Case(
        "json-50MB-string",
        "JSON",
        json_huge_string,
        "is longer than 8,388,608 characters",
        normal=_normal_text(json_normal, 45),
    ),
    Case(
        "json-2MB-string",
        "JSON",
        json_big_string,
        "field NAME is 2,097,152 characters long; the limit is 1,048,576",
        normal=_normal_text(json_normal, 45),
    ),
    Case(
        "csv-50MB-line",
        "CSV",
        csv_long_line,
        "line 2 is longer than 8,388,608 characters",
        normal=_normal_text(csv_normal, 25),
    ),
    Case(
        "csv-20000-repeated-keys",
        "CSV",
        csv_repeated_key,
        "",
        status=PROCESSED,
        normal=_normal_text(csv_normal, 25),
    ),
)

CASES_BY_NAME = {case.name: case for case in CASES}
