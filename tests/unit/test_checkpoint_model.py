"""The serializer types a checkpoint may carry: an allowlist of data-only ones."""

from __future__ import annotations

import pytest

from core.checkpoints.model import STORED_TYPES, check_type
from core.errors import ValidationError


@pytest.mark.parametrize("kind", [*sorted(STORED_TYPES), "msgpack+aes", "json+aes256"])
def test_data_types_and_their_sealed_forms_are_stored(kind: str) -> None:
    assert check_type("type", kind) == kind


@pytest.mark.parametrize("kind", ["pickle", "pickle+aes", "", "msgpack+", "msgpack+AES!", "yaml"])
def test_any_other_type_is_refused_by_name(kind: str) -> None:
    with pytest.raises(ValidationError, match="refused") as refused:
        check_type("type", kind)
    assert refused.value.field == "type"
