"""IDs come back from clients quoted, escaped, braced or percent-encoded (PROTOCOL §1)."""

import pytest

from shared.api.http import clean_id, parse_guid
from shared.errors import ValidationError

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
