"""What a session's conversation state is made of, and the rules its fields follow.

Six fields, each JSON, each in one of five Redis kinds with its own TTL (``KIND_TTL``):

- ``subject`` (the conversation's topic, a string or None) and ``data`` (a JSON object the app
  owns, validated by the app's ``StateSchema`` if it declares one): kind ``state``;
- ``tasks``: the task stack (``core/state/tasks.py``): kind ``tasks``;
- ``evaluation``: the progress of the current checkpoint's evaluation: kind ``evaluation``;
- ``context`` and ``temp`` (the temporary context): JSON objects, kinds ``context``, ``temp``.

Agent results live beside them with their own operations (``core/state/results.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from config.settings import Settings
from core.errors import ConfigurationError, ValidationError

FIELDS = ("subject", "data", "tasks", "evaluation", "context", "temp")
# The Redis kind each field lives in (a kind is one key with one TTL).
KIND_OF = {
    "subject": "state",
    "data": "state",
    "tasks": "tasks",
    "evaluation": "evaluation",
    "context": "context",
    "temp": "temp",
}
EMPTY: dict[str, Any] = {
    "subject": None,
    "data": {},
    "tasks": [],
    "evaluation": {},
    "context": {},
    "temp": {},
}


def kind_ttls(settings: Settings) -> list[int]:
    """The Redis TTLs of the kinds, in the scripts' order: state, tasks, evaluation, context,
    temp (the temporary context expires like the context)."""
    return [
        settings.state_ttl_s,
        settings.state_task_ttl_s,
        settings.state_evaluation_ttl_s,
        settings.state_context_ttl_s,
        settings.state_context_ttl_s,
    ]


def encode(value: Any) -> str:
    """The canonical JSON of a field: dirty tracking compares these strings. NaN and
    Infinity are refused (they are not JSON; PostgreSQL would reject them at drain time)."""
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    )


def check_field(name: str, value: Any, *, max_bytes: int) -> str:
    """The field's JSON, or a ``ValidationError`` naming it."""
    if name == "subject":
        if value is not None and not isinstance(value, str):
            raise ValidationError(
                "subject", f"must be a string or None, got {type(value).__name__}"
            )
    elif name == "tasks":
        if not isinstance(value, list):
            raise ValidationError("tasks", f"must be a list, got {type(value).__name__}")
    elif not isinstance(value, dict):
        raise ValidationError(name, f"must be a JSON object (dict), got {type(value).__name__}")
    try:
        encoded = encode(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, f"must be JSON-serializable: {exc}") from None
    size = len(encoded.encode())
    if size > max_bytes:
        raise ValidationError(
            name, f"is {size} bytes of JSON (limit {max_bytes}, MEMSCRIBE_STATE_MAX_FIELD_BYTES)"
        )
    return encoded


Migration = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class StateSchema:
    """The app's declared shape of ``data``: a pydantic model, its version, and how to bring
    data written under an older version up to this one.

    ``migrations[n]`` turns version-n data into version n+1 data; loading version-k data runs
    ``migrations[k] .. migrations[version - 1]`` in order, then validates with ``model``. The
    migrated data is written back with the next ``save()``.
    """

    model: type[BaseModel]
    version: int = 1
    migrations: Mapping[int, Migration] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ConfigurationError("StateSchema.version must be >= 1")
        missing = [n for n in range(1, self.version) if n not in self.migrations]
        if missing:
            raise ConfigurationError(
                f"StateSchema version {self.version} needs migrations from versions {missing}"
            )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` as the model normalizes it (JSON types), or a ``ValidationError`` naming the
        first bad field as ``data.<path>``."""
        try:
            return self.model.model_validate(data).model_dump(mode="json")
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(part) for part in first["loc"])
            raise ValidationError(f"data.{path}" if path else "data", first["msg"]) from None

    def upgrade(self, data: dict[str, Any], written_by: int) -> dict[str, Any]:
        """Data written under schema ``written_by``, migrated to this version and validated."""
        if written_by > self.version:
            raise ConfigurationError(
                f"state data was written by schema version {written_by}; this app declares "
                f"version {self.version} (upgrade the app before reading it)"
            )
        for version in range(written_by, self.version):
            data = self.migrations[version](data)
        return self.validate(data)


@dataclass(frozen=True, slots=True)
class StateChange:
    """One version of a session's state in its history (``MemoryClient.state_history``)."""

    version: int
    prev_version: int
    actor: str | None
    changed_at: datetime
    schema_version: int
    fields: list[str]
    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AgentResult:
    """One agent result: put by ``put_result``, taken once by ``take_unconsumed``."""

    result_id: str
    position: int
    result: Any
    created_ms: int
    consumed_ms: int | None = None

    @property
    def consumed(self) -> bool:
        return self.consumed_ms is not None
