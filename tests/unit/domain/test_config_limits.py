"""Entity schemas that could not be stored are refused when saved, not at import time."""

import pytest

from shared.domain.config import MAX_ROW_PROPERTIES, parse_entity
from shared.errors import ValidationError


def entity(fields):
    return {"keys": ["F0"], "fields": fields}


def test_a_wide_entity_within_the_row_limit_is_accepted():
    fields = [{"name": f"F{i}"} for i in range(MAX_ROW_PROPERTIES - 2)]
    assert len(parse_entity("Wide", entity(fields)).fields) == MAX_ROW_PROPERTIES - 2


def test_numeric_fields_count_twice_against_the_row_limit():
    fields = [{"name": "F0"}] + [{"name": f"N{i}", "type": "int"} for i in range(MAX_ROW_PROPERTIES // 2)]
    with pytest.raises(ValidationError, match="ints and decimals count twice"):
        parse_entity("TooWide", entity(fields))
