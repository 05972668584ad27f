"""Source data formats end to end: EXCEL in File jobs, user-defined formats, encodings and BOMs."""

from __future__ import annotations

import codecs
import io
from datetime import date, datetime

import openpyxl

TYPED = {
    "keys": ["CODE"],
    "fields": [
        {"name": "CODE", "type": "string", "maxLength": 20},
        {"name": "NAME", "type": "string"},
        {"name": "AMOUNT", "type": "decimal"},
        {"name": "QTY", "type": "int"},
        {"name": "VALIDFROM", "type": "date"},
        {"name": "CHANGED", "type": "datetime"},
        {"name": "ACTIVE", "type": "bool"},
    ],
}


def run_file(api, job, data: bytes, expected: str) -> dict:
    activity, app, entity = job
    resp = api.enqueue(activity, app, data, entity=entity)
    assert resp.status_code == 200, resp.text
    status = api.wait_terminal(app, resp.json())
    detail = api.message(resp.json())
    assert status == expected, (detail.get("errorSummary"), detail)
    return detail


def by_code(api, entity: str) -> dict[str, dict]:
    return {r["CODE"]: r for r in api.records(entity, company="usmf")}


def test_excel_file_job_converts_dates_and_numbers(api):
    job = api.import_job(TYPED, fmt="EXCEL", processOnArrival=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Items"
    ws.append(["CODE", "NAME", "AMOUNT", "QTY", "VALIDFROM", "CHANGED", "ACTIVE"])
    ws.append(["E1", "Widget", 1234.5, 7, datetime(2024, 1, 31), datetime(2024, 2, 1, 10, 20, 30), True])
    ws.append(["E2", "Gadget", 0.1, 12.0, date(2023, 12, 24), None, False])
    ws.append(["E3", 42, "19.99", "3", "2024-03-01", "2024-03-01 08:00:00", "yes"])  # text cells
    ws.append([None, None, None, None, None, None, None])  # an empty row is skipped
    ws.append(["E4", "Bad", "abc", 1.5, None, None, None])  # rejected: not a number, not whole
    ws["C2"].number_format = "#,##0.00"  # display formatting does not change the value
    buf = io.BytesIO()
    wb.save(buf)

    detail = run_file(api, job, buf.getvalue(), "ProcessedWithErrors")
    assert detail["counts"][job[2]] == {"read": 4, "written": 3, "rejected": 1}
    assert "AMOUNT: 'abc' is not a decimal number" in detail["errorSummary"]
    assert "QTY: '1.5' is not a whole number" in detail["errorSummary"]
    rows = by_code(api, job[2])
    assert rows["E1"] == {
        "CODE": "E1",
        "NAME": "Widget",
        "AMOUNT": "1234.5",
        "QTY": 7,
        "VALIDFROM": "2024-01-31",
        "CHANGED": "2024-02-01T10:20:30Z",
        "ACTIVE": True,
        "company": "usmf",
    }
    assert rows["E2"]["AMOUNT"] == "0.1"  # no float noise
    assert rows["E2"]["QTY"] == 12 and rows["E2"]["VALIDFROM"] == "2023-12-24"
    assert rows["E2"]["ACTIVE"] is False and rows["E2"]["CHANGED"] is None
    assert rows["E3"]["NAME"] == "42" and rows["E3"]["AMOUNT"] == "19.99"
    assert rows["E3"]["CHANGED"] == "2024-03-01T08:00:00Z"
    assert "E4" not in rows


GERMAN = {
    "kind": "csv",
    "delimiter": ";",
    "decimalSeparator": ",",
    "dateFormat": "dd.MM.yyyy",
    "datetimeFormat": "dd.MM.yyyy HH:mm",
    "encoding": "cp1252",
}


def _format(api, body: dict) -> str:
    name = api.unique("Fmt")
    resp = api.admin("PUT", f"/api/manage/formats/{name}", json=body)
    assert resp.status_code == 201, resp.text
    return name


def test_user_defined_format_semicolon_decimal_comma_dates_encoding(api):
    fmt = _format(api, GERMAN)
    assert api.ok("GET", f"/api/manage/formats/{fmt}")["delimiter"] == ";"
    job = api.import_job(TYPED, fmt=fmt, processOnArrival=True)
    text = (
        "CODE;NAME;AMOUNT;QTY;VALIDFROM;CHANGED;ACTIVE\r\n"
        "G1;Müller & Söhne;1234,50;3;31.01.2024;01.02.2024 10:20;true\r\n"
        'G2;"Quoted; with delimiter";-0,5;0;29.02.2024;;false\r\n'
        "G3;Dot decimal;1.234,50;1;01.01.2024;;true\r\n"  # a thousands separator: rejected
        "G4;Bad date;1;1;2024-13-01;;true\r\n"
    )
    detail = run_file(api, job, text.encode("cp1252"), "ProcessedWithErrors")
    assert detail["counts"][job[2]] == {"read": 4, "written": 2, "rejected": 2}
    assert "'1.234,50' is not a decimal number" in detail["errorSummary"]
    assert "VALIDFROM: '2024-13-01' is not a date" in detail["errorSummary"]
    rows = by_code(api, job[2])
    assert rows["G1"]["NAME"] == "Müller & Söhne"  # cp1252 decoded
    assert rows["G1"]["AMOUNT"] == "1234.50"
    assert rows["G1"]["VALIDFROM"] == "2024-01-31"
    assert rows["G1"]["CHANGED"] == "2024-02-01T10:20:00Z"
    assert rows["G2"]["NAME"] == "Quoted; with delimiter" and rows["G2"]["AMOUNT"] == "-0.5"
    assert rows["G2"]["VALIDFROM"] == "2024-02-29"


def test_bom_wins_over_the_format_encoding(api):
    fmt = _format(api, GERMAN)  # declares cp1252
    job = api.import_job(TYPED, fmt=fmt, processOnArrival=True)
    text = "CODE;NAME\r\nB1;Grüße €\r\n"
    run_file(api, job, codecs.BOM_UTF8 + text.encode("utf-8"), "Processed")
    assert by_code(api, job[2])["B1"]["NAME"] == "Grüße €"

    # A UTF-16LE file with its BOM needs no encoding setting at all (the plain CSV format).
    csv_job = api.import_job(TYPED, processOnArrival=True)
    text = "CODE,NAME,AMOUNT\r\nU1,Ωmega ✓,2.5\r\n"
    run_file(api, csv_job, codecs.BOM_UTF16_LE + text.encode("utf-16-le"), "Processed")
    assert by_code(api, csv_job[2])["U1"]["NAME"] == "Ωmega ✓"
    assert by_code(api, csv_job[2])["U1"]["AMOUNT"] == "2.5"


def test_csv_unicode_format(api):
    job = api.import_job(TYPED, fmt="CSV-Unicode", processOnArrival=True)
    text = "CODE,NAME\r\nW1,Wide ü\r\n"
    run_file(api, job, text.encode("utf-16-le"), "Processed")  # no BOM: the format says UTF-16LE
    assert by_code(api, job[2])["W1"]["NAME"] == "Wide ü"


def test_undecodable_byte_names_its_offset(api):
    job = api.import_job(TYPED, processOnArrival=True)
    good = b"CODE,NAME\r\nA1,plain\r\nA2,caf"
    data = good + b"\xff\xfe!\r\n"
    detail = run_file(api, job, data, "PreProcessingError")
    assert f"the byte(s) 0xFF at byte offset {len(good)} cannot be decoded" in detail["errorSummary"]
    assert "not valid UTF-8 text" in detail["errorSummary"]
    assert api.records(job[2], company="usmf") == []  # nothing written from an unreadable file


# Issue 12: yes/no words, thousands separators, date patterns as written, value conversions ----------------

LOCALE_ENTITY = {
    "keys": ["CODE"],
    "fields": [
        {"name": "CODE", "type": "string", "maxLength": 20},
        {"name": "AMOUNT", "type": "decimal"},
        {"name": "QTY", "type": "int"},
        {"name": "VALIDFROM", "type": "date"},
        {"name": "ACTIVE", "type": "bool"},
        {"name": "TERMS", "type": "enum", "values": ["Net30", "Net60"]},
    ],
}
LOCALE = {
    "kind": "csv",
    "delimiter": ";",
    "decimalSeparator": ",",
    "thousandsSeparator": ".",
    "dateFormat": "dd.MM.yyyy",
    "trueValues": ["Ja"],
    "falseValues": ["Nein"],
}


def test_german_values_and_a_field_conversion_import_end_to_end(api):
    fmt = _format(api, LOCALE)
    assert api.ok("GET", f"/api/manage/formats/{fmt}")["dateFormat"] == "dd.MM.yyyy"  # as written
    mapping = [
        {"source": "Zahlungsziel", "target": "TERMS", "conversions": [{"from": "30 Tage", "to": "Net30"},
                                                                       {"from": "60 Tage", "to": "Net60"}]},
    ]  # fmt: skip
    job = api.import_job(LOCALE_ENTITY, fmt=fmt, mapping=mapping, processOnArrival=True)
    text = (
        "CODE;AMOUNT;QTY;VALIDFROM;ACTIVE;Zahlungsziel\r\n"
        "D1;1.234,56;1.000;31.01.2024;Ja;30 Tage\r\n"
        "D2;-0,5;2;29.02.2024;nein;60 Tage\r\n"
        "D3;7;1;2024-01-31;Ja;30 Tage\r\n"  # ISO date under dd.MM.yyyy: rejected
        "D4;7;1;01.01.2024;yes;30 Tage\r\n"  # English word under Ja/Nein: rejected
        "D5;1.23,4;1;01.01.2024;Ja;30 Tage\r\n"  # irregular digit groups: rejected
        "D6;7;1;01.01.2024;Ja;90 Tage\r\n"  # no conversion for this value: the enum refuses it
    )
    detail = run_file(api, job, text.encode("cp1252"), "ProcessedWithErrors")
    assert detail["counts"][job[2]] == {"read": 6, "written": 2, "rejected": 4}
    errors = detail["errorSummary"]
    assert "VALIDFROM: '2024-01-31' is not a date (expected dd.MM.yyyy)" in errors
    assert "ACTIVE: 'yes' is not a yes/no value (use Ja for yes and Nein for no)" in errors
    assert (
        "AMOUNT: '1.23,4' is not a decimal number (use ',' as the decimal separator and '.' between groups"
        in errors
    )
    assert "TERMS: '90 Tage' is not one of Net30, Net60" in errors
    rows = by_code(api, job[2])
    assert set(rows) == {"D1", "D2"}
    assert rows["D1"]["AMOUNT"] == "1234.56" and rows["D1"]["QTY"] == 1000
    assert rows["D1"]["VALIDFROM"] == "2024-01-31" and rows["D1"]["ACTIVE"] is True
    assert rows["D1"]["TERMS"] == "Net30"
    assert rows["D2"]["AMOUNT"] == "-0.5" and rows["D2"]["ACTIVE"] is False and rows["D2"]["TERMS"] == "Net60"


# Issue 12: structure the format does not map is imported or reported, never dropped ------------------
ORDER = {
    "keys": ["ORDERID"],
    "fields": [
        {"name": "ORDERID", "type": "string", "maxLength": 20},
        {"name": "CUSTOMER", "type": "string"},
    ],
}


def test_xml_attribute_header_with_nested_lines_is_rejected_with_the_reason_not_processed(api):
    """The lines of a header would be lost: the header is rejected, naming them, and the message says so."""
    job = api.import_job(ORDER, fmt="XML-Attribute", processOnArrival=True)
    data = (
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        b"<Document>\n"
        b'  <SALESORDERHEADER ORDERID="SO1" CUSTOMER="C1">\n'
        b'    <SALESORDERLINE ITEM="A" QTY="1"/>\n'
        b'    <SALESORDERLINE ITEM="B" QTY="2"/>\n'
        b"  </SALESORDERHEADER>\n"
        b'  <SALESORDERHEADER ORDERID="SO2" CUSTOMER="C2"/>\n'
        b"</Document>\n"
    )
    detail = run_file(api, job, data, "ProcessedWithErrors")
    assert detail["counts"][job[2]] == {"read": 2, "written": 1, "rejected": 1}
    summary = detail["errorSummary"]
    assert "line 3: the record has the child element(s) <SALESORDERLINE> (first at line 4)" in summary
    assert "XML-Attribute does not import" in summary
    assert [r["ORDERID"] for r in api.records(job[2], company="usmf")] == ["SO2"]


def test_json_in_the_odata_value_shape_imports_its_records(api):
    job = api.import_job(TYPED, fmt="JSON", processOnArrival=True)
    data = (
        b'{"@odata.context": "https://contoso.operations.dynamics.com/data/$metadata#Items",\n'
        b' "value": [\n'
        b'  {"@odata.etag": "W/\\"JzEn\\"", "CODE": "J1", "NAME": "First", "AMOUNT": 1.10, "QTY": 3, "COLOR": "red"},\n'
        b'  {"@odata.etag": "W/\\"JzIn\\"", "CODE": "J2", "NAME": "Second", "AMOUNT": null, "ACTIVE": true}\n'
        b" ],\n"
        b' "@odata.count": 2}\n'
    )
    detail = run_file(api, job, data, "Processed")
    # COLOR is no field of the entity: not imported, as in D365, but listed on the message.
    assert detail["counts"][job[2]] == {"read": 2, "written": 2, "rejected": 0, "unmappedColumns": ["COLOR"]}
    rows = by_code(api, job[2])
    assert "COLOR" not in rows["J1"]
    assert rows["J1"]["NAME"] == "First" and rows["J1"]["AMOUNT"] == "1.10" and rows["J1"]["QTY"] == 3
    assert rows["J2"]["ACTIVE"] is True and rows["J2"]["AMOUNT"] is None
    assert not any(key.startswith("@odata") for row in rows.values() for key in row)


def test_csv_with_an_unclosed_text_qualifier_names_the_line_it_opens_on(api):
    job = api.import_job(TYPED, processOnArrival=True)
    data = b'CODE,NAME,AMOUNT\r\nQ1,fine,1\r\nQ2,"never closed,2\r\nQ3,lost,3\r\n'
    detail = run_file(api, job, data, "PreProcessingError")
    assert "the text qualifier '\"' opened on line 3 is never closed" in detail["errorSummary"]
    assert "values but the header has" not in detail["errorSummary"]
    assert api.records(job[2], company="usmf") == []
