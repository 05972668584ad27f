"""An execution that handled several files answers the D365 error-file actions for all of them (issue 11,
item 5): one error file holding every rejected record with the file it came from, and GetExecutionErrors
opening with the totals. Before, the first file's errors alone came back."""

from __future__ import annotations

import csv
import io
import json

import requests

from tests.e2e.test_import_protocol import CG, csv_bytes, ris_enqueue
from tests.e2e.test_package_api import value


def test_an_execution_of_several_files_answers_for_all_of_them(api):
    activity, app, entity = api.import_job(
        CG, processInOrder=True, recurrence={"unit": "minutes", "interval": 1}
    )
    files = {
        "good.csv": ["E1,ok,Net30,1,No"],
        "bad-one.csv": ["E2,ok,Net30,1,No", "E3,bad,Nope,1,No"],
        "bad-two.csv": ["E4,bad,Nope,1,No", "E5,bad,Never,2,No"],
    }
    ids = {
        name: ris_enqueue(api, activity, app, csv_bytes(rows), name=name).json()
        for name, rows in files.items()
    }
    api.run_scheduler()  # one drain: one run (execution) handles the three files in order
    statuses = {name: api.wait_terminal(app, mid, timeout=120) for name, mid in ids.items()}
    assert statuses == {
        "good.csv": "Processed",
        "bad-one.csv": "ProcessedWithErrors",
        "bad-two.csv": "ProcessedWithErrors",
    }

    token = api.make_token(app)
    executions = {value(api, "GetExecutionIdByMessageId", token, {"_messageId": mid}) for mid in ids.values()}
    assert len(executions) == 1, "the three files were handled by one execution"
    [execution] = executions

    errors = json.loads(value(api, "GetExecutionErrors", token, {"executionId": execution}))
    assert (
        errors[0] == "3 rejected record(s) and 0 failed file(s) in total, across 3 file(s) of this execution"
    )

    body = {"executionId": execution, "entityName": entity}  # labels repeat across the session's entities
    assert value(api, "GenerateImportTargetErrorKeysFile", token, body) is True
    url = value(api, "GetImportTargetErrorKeysFileUrl", token, body)
    rows = list(csv.reader(io.StringIO(requests.get(url, timeout=30).content.decode("utf-8"))))
    header, records = rows[0], rows[1:]
    assert header[-2:] == ["SourceMessageId", "SourceFile"]
    assert sorted((r[-1], r[-2]) for r in records) == sorted(
        [
            ("bad-one.csv", ids["bad-one.csv"]),
            ("bad-two.csv", ids["bad-two.csv"]),
            ("bad-two.csv", ids["bad-two.csv"]),
        ]
    )
    assert all(any(key in ",".join(r) for key in ("E3", "E4", "E5")) for r in records)
