"""XSLT end to end: transforms stored by name, referenced by a project entity, applied to inbound XML."""

from __future__ import annotations

ENTITY = {
    "keys": ["CODE"],
    "fields": [
        {"name": "CODE", "type": "string", "maxLength": 20},
        {"name": "NAME", "type": "string"},
        {"name": "AMOUNT", "type": "decimal"},
    ],
}

# Partner XML in its own shape, reshaped into D365's <Document><ENTITY><FIELD>.
ORDERS_TO_DOCUMENT = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" encoding="utf-8"/>
  <xsl:template match="/Orders">
    <Document><xsl:apply-templates select="Order"/></Document>
  </xsl:template>
  <xsl:template match="Order">
    <ORDER><CODE><xsl:value-of select="@no"/></CODE><NAME><xsl:value-of select="Customer"/></NAME>
      <AMOUNT><xsl:value-of select="Total"/></AMOUNT></ORDER>
  </xsl:template>
</xsl:stylesheet>"""

UPPER_NAMES = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
  <xsl:template match="NAME/text()">
    <xsl:value-of select="translate(., 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')"/>
  </xsl:template>
</xsl:stylesheet>"""

REFUSE_NEGATIVE = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/">
    <xsl:if test="//Total[number(.) &lt; 0]">
      <xsl:message terminate="yes">negative totals are not accepted (order <xsl:value-of
        select="//Order[number(Total) &lt; 0]/@no"/>)</xsl:message>
    </xsl:if>
    <Document/>
  </xsl:template>
</xsl:stylesheet>"""

ORDERS = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<Orders>'
    b'<Order no="SO-1"><Customer>acme corp</Customer><Total>12.50</Total></Order>'
    b'<Order no="SO-2"><Customer>globex</Customer><Total>7</Total></Order>'
    b"</Orders>"
)


def put_transform(api, xslt: bytes, name: str | None = None) -> str:
    name = name or api.unique("xslt")
    resp = api.admin("PUT", f"/api/manage/transforms/{name}", data=xslt)
    assert resp.status_code in (200, 201), resp.text
    return name


def run(api, job, data: bytes) -> dict:
    activity, app, entity = job
    resp = api.enqueue(activity, app, data, entity=entity)
    assert resp.status_code == 200, resp.text
    api.wait_terminal(app, resp.json())
    return api.message(resp.json())


def test_stored_transforms_apply_in_sequence_before_parsing(api):
    reshape, upper = put_transform(api, ORDERS_TO_DOCUMENT), put_transform(api, UPPER_NAMES)
    assert api.admin("GET", f"/api/manage/transforms/{reshape}").content == ORDERS_TO_DOCUMENT
    job = api.import_job(ENTITY, fmt="XML-Element", transforms=[reshape, upper], processOnArrival=True)
    detail = run(api, job, ORDERS)
    assert detail["status"] == "Processed", detail
    assert detail["counts"][job[2]] == {"read": 2, "written": 2, "rejected": 0}
    rows = {r["CODE"]: r for r in api.records(job[2], company="usmf")}
    assert rows["SO-1"]["NAME"] == "ACME CORP" and rows["SO-1"]["AMOUNT"] == "12.50"
    assert rows["SO-2"]["NAME"] == "GLOBEX" and rows["SO-2"]["AMOUNT"] == "7"


def test_an_updated_transform_is_used_at_once(api):
    name = put_transform(api, ORDERS_TO_DOCUMENT)
    job = api.import_job(ENTITY, fmt="XML-Element", transforms=[name], processOnArrival=True)
    assert run(api, job, ORDERS)["status"] == "Processed"
    put_transform(
        api, ORDERS_TO_DOCUMENT.replace(b'select="Customer"', b"select=\"concat('v2 ', Customer)\""), name
    )
    assert run(api, job, ORDERS)["status"] == "Processed"
    rows = {r["CODE"]: r for r in api.records(job[2], company="usmf")}
    assert rows["SO-1"]["NAME"] == "v2 acme corp"


def test_a_failing_transform_is_a_preprocessing_error_with_its_message(api):
    job = api.import_job(
        ENTITY, fmt="XML-Element", transforms=[put_transform(api, REFUSE_NEGATIVE)], processOnArrival=True
    )
    data = ORDERS.replace(b"<Total>7</Total>", b"<Total>-7</Total>")
    detail = run(api, job, data)
    assert detail["status"] == "PreProcessingError", detail
    assert "the XSLT failed: negative totals are not accepted (order SO-2)" in detail["errorSummary"]
    assert api.records(job[2], company="usmf") == []


def test_input_that_is_not_xml_fails_the_transform_step(api):
    job = api.import_job(
        ENTITY, fmt="XML-Element", transforms=[put_transform(api, ORDERS_TO_DOCUMENT)], processOnArrival=True
    )
    detail = run(api, job, b"CODE,NAME\r\nnot,xml\r\n")
    assert detail["status"] == "PreProcessingError", detail
    assert "the XML input is not well-formed" in detail["errorSummary"]

    xxe = b'<!DOCTYPE Orders [<!ENTITY x SYSTEM "file:///etc/passwd">]><Orders><Order no="1">&x;</Order></Orders>'
    detail = run(api, job, xxe)
    assert detail["status"] == "PreProcessingError", detail
    assert "DTD" in detail["errorSummary"] and "root:" not in str(detail)


def test_a_transform_that_does_not_compile_is_refused(api):
    resp = api.admin(
        "PUT",
        f"/api/manage/transforms/{api.unique('bad')}",
        data=b'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        b'<xsl:template match="/"><xsl:value-of select="((("/></xsl:template></xsl:stylesheet>',
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "InvalidTransform"
    assert "does not compile" in resp.json()["error"]["message"]
