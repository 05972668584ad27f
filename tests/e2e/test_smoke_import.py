"""A first end-to-end pass: enqueue a CSV as RIS does and see it Processed, with typed records."""

CG = {
    "label": "Customer groups",
    "keys": ["CUSTOMERGROUPID"],
    "fields": [
        {"name": "CUSTOMERGROUPID", "type": "string", "maxLength": 10},
        {"name": "DESCRIPTION", "type": "string"},
        {"name": "PAYMENTTERMS", "type": "enum", "values": ["Net30", "Net60"]},
        {"name": "CREDITLIMIT", "type": "decimal"},
    ],
}


def test_csv_on_arrival_is_processed(api):
    activity, app, entity = api.import_job(CG, processOnArrival=True)
    data = b"CUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS,CREDITLIMIT\r\n10,Wholesale,Net30,1000.50\r\n30,Export,net60,\r\n"
    resp = api.enqueue(activity, app, data, entity="Customer groups", external_id="cg.csv")
    assert resp.status_code == 200, resp.text
    message_id = resp.json()
    assert resp.text == f'"{message_id}"'
    assert api.wait_terminal(app, message_id) == "Processed"
    records = {r["CUSTOMERGROUPID"]: r for r in api.records(entity, company="usmf")}
    assert records["10"]["CREDITLIMIT"] == "1000.50"
    assert records["30"]["PAYMENTTERMS"] == "Net60"
