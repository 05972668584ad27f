"""shared.api.http: IDs as clients send them back (quoted, escaped, braced or percent-encoded, PROTOCOL §1),
the endpoint wrapper's order (authenticate, authorize, cap the body, then parse; issue 17), continuation
tokens and integer parameters."""

import base64
import json

import azure.functions as func
import pytest

from shared.api import http
from shared.api.http import clean_id, parse_guid
from shared.auth.principal import Principal
from shared.errors import AuthenticationError, ForbiddenError, ValidationError

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


@pytest.mark.parametrize(
    "raw",
    [
        GUID,
        f'"{GUID}"',
        f'"\\"{GUID}\\""',
        "{" + GUID + "}",
        "%7B" + GUID.upper() + "%7D",
        f"  '{GUID}' ",
        f'"{{{GUID}}}"',
    ],
)
def test_ids_are_cleaned(raw):
    assert parse_guid(raw, "id") == GUID


def test_clean_id_keeps_inner_text():
    assert clean_id('"abc-def"') == "abc-def"


def test_not_a_guid_is_a_validation_error():
    with pytest.raises(ValidationError, match="not a GUID"):
        parse_guid("nope", "message ID")


def test_clean_id_is_linear_on_long_runs_of_junk():
    # A `junk+$` search retried at every position took 11 s for 20,000 spaces and grows with the square;
    # 200,000 would take about 20 minutes (the suite's timeout fails it long before).
    text = " " * 200_000 + "a" + " " * 200_000 + "b" + '"' * 200_000
    assert clean_id(text) == "a" + " " * 200_000 + "b"
    assert clean_id('"{}"') == ""
    assert clean_id("'{ab}'") == "ab"


# The endpoint wrapper's order, body caps, continuation tokens and integer parameters ----------------------


def request(body: bytes = b"", *, headers=None, params=None, method: str = "POST") -> func.HttpRequest:
    if headers is None:
        headers = {"content-length": str(len(body))}
    return func.HttpRequest(
        method=method, url="http://localhost/api/x", headers=headers, params=params or {}, body=body
    )


@pytest.fixture
def wired(monkeypatch):
    """No setting problems; authenticate and the role checks record their calls instead of reading tokens."""
    import shared.setting_problems as problems

    calls: list[str] = []
    monkeypatch.setattr(problems, "startup_problems", lambda: [])

    def authenticate(req):
        calls.append("authenticate")
        if req.headers.get("authorization") != "Bearer ok":
            raise AuthenticationError("no token")
        return Principal(app_id="a")

    def require_partner(principal):
        calls.append("partner")
        if principal.app_id != "partner":
            raise ForbiddenError("not on any job", code="ApplicationNotAuthorized")

    monkeypatch.setattr(http, "authenticate", authenticate)
    monkeypatch.setattr(http, "require_partner", require_partner)
    return calls


def error_code(resp) -> tuple[int, str]:
    return resp.status_code, json.loads(resp.get_body())["error"]["code"]


def test_authentication_and_authorization_come_before_the_body(wired):
    parsed = []

    @http.endpoint(auth="partner", max_body=100)
    def handler(req, principal):
        parsed.append(http.read_json(req))
        return http.json_response({})

    huge = b"{" * 10_000_000
    assert error_code(handler(request(huge))) == (401, "Unauthorized")
    assert error_code(handler(request(huge, headers={"authorization": "Bearer ok"}))) == (
        403,
        "ApplicationNotAuthorized",
    )
    assert wired == ["authenticate", "authenticate", "partner"] and parsed == []


def test_the_byte_cap_follows_authentication_and_precedes_the_handler(wired, monkeypatch):
    monkeypatch.setattr(http, "require_admin", lambda principal: wired.append("admin"))
    ran = []

    @http.endpoint(auth="admin", max_body=10)
    def handler(req, principal):
        ran.append(True)
        return http.json_response(http.read_json(req))

    ok = {"authorization": "Bearer ok"}
    resp = handler(request(b'{"a":"bcdefgh"}', headers={**ok, "content-length": "15"}))
    assert error_code(resp) == (413, "PayloadTooLarge") and not ran
    assert wired == ["authenticate", "admin"]
    resp = handler(request(b"[[[1]]]", headers={**ok, "content-length": "7"}))
    assert resp.status_code == 200 and json.loads(resp.get_body()) == [[[1]]]


def test_read_json_parses_under_the_endpoint_cap(wired):
    @http.endpoint(auth="anonymous", max_body=None)
    def handler(req):
        return http.json_response({"limit": http.body_limit(), "value": http.read_json(req)})

    # No cap on the endpoint: read_json still applies the action default.
    big = b'"' + b"x" * http.json_body.ACTION_BODY_BYTES + b'"'
    assert error_code(handler(request(big))) == (413, "PayloadTooLarge")
    assert http.body_limit() == http.json_body.ACTION_BODY_BYTES  # reset after the call


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"", {}, (411, "LengthRequired")),
        (b"", {"content-length": "0"}, (400, "EmptyBody")),
        (b"   ", {"content-length": "3"}, (400, "EmptyBody")),
        (b"[" * 100_000, None, (400, "JsonTooDeep")),
        (b'{"a":' + b"1" * 5000 + b"}", None, (400, "JsonNumberTooLong")),
        (b'{"a":"\\ud800"}', None, (400, "InvalidUnicode")),
        (b"\xff", None, (400, "InvalidUnicode")),
        (b"{'a':'\\ud800'}", None, (400, "InvalidUnicode")),
        (b"{'a':" + b"[" * 100_000, None, (400, "JsonTooDeep")),
        (b"{'a':None}", None, (400, "InvalidJson")),
    ],
)
def test_read_json_errors(wired, body, headers, expected):
    @http.endpoint(auth="anonymous", max_body=1024 * 1024)
    def handler(req):
        return http.json_response(http.read_json(req, lenient_quotes=True))

    assert error_code(handler(request(body, headers=headers))) == expected


def test_an_unknown_auth_level_is_refused_at_import():
    with pytest.raises(ValueError, match="auth must be one of"):
        http.endpoint(auth="callr")


def test_a_genuine_fault_is_still_a_500(wired):
    @http.endpoint(auth="anonymous")
    def handler(req):
        raise RuntimeError("a bug")

    assert error_code(handler(request(b"{}"))) == (500, "InternalError")


def _token(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_continuations_round_trip():
    token = {"PartitionKey": "MQ==", "RowKey": "cm93IDE="}
    assert http.decode_continuation(http.encode_continuation(token)) == token
    assert http.decode_continuation(_token({"PartitionKey": None, "RowKey": "eA=="})) == {
        "PartitionKey": None,
        "RowKey": "eA==",
    }


@pytest.mark.parametrize(
    "text",
    [
        "!!!not base64",
        "é",
        _token([1, 2]),
        _token("x"),
        _token({}),
        _token({"PartitionKey": "a", "Other": "b"}),
        _token({"PartitionKey": ["a"]}),
        _token({"PartitionKey": "a\u0001"}),
        _token({"PartitionKey": "\ud800"}),
        _token({"PartitionKey": "é"}),
        _token({"PartitionKey": "x" * 1025}),
        _token({"PartitionKey": 1e999}),
        base64.urlsafe_b64encode(b"[" * 3000).decode(),
        base64.urlsafe_b64encode(b'{"PartitionKey":' + b"9" * 2000 + b"}").decode(),
        "A" * (http.MAX_CONTINUATION_CHARS + 1),
    ],
)
def test_forged_continuations_are_400(text):
    with pytest.raises(ValidationError) as caught:
        http.decode_continuation(text)
    assert caught.value.code == "InvalidContinuation"


@pytest.mark.parametrize("raw", ["9" * 5000, "1" * 21, "x", "1.5", "1e3"])
def test_int_params_refuse_non_integers_and_long_digit_runs(raw):
    with pytest.raises(ValidationError) as caught:
        http.int_param(request(params={"top": raw}, method="GET"), "top", 10)
    assert caught.value.code == "InvalidParameter"


def test_int_params_in_range():
    assert http.int_param(request(params={"top": "25"}, method="GET"), "top", 10) == 25
    assert http.int_param(request(method="GET"), "top", 10) == 10
