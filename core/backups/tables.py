"""What a backup holds: every durable table but the key store, each row as exact JSON.

A row is encoded as a JSON array of its column values in table order. JSON columns are read
as their stored text (``CAST(... AS TEXT)``): ``messages.metadata`` is ``json``, which keeps
the text the app sent, and a restore writes that same text back, byte for byte. Timestamps
travel as ISO 8601 (with their offset where the database gives one), so microseconds and time
zones survive.

Each row also has an owner: the data subject whose key encrypts it in the backup, found from
the row itself (``subject_id``) or its session's row. Rows that belong to no subject (usage
counters, receipts, tombstones, sessions without a subject) go under the backup's own key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    MetaData,
    Select,
    Table,
    Text,
    and_,
    cast,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from core.store import db

# Never in a backup: the data keys (a backup must not carry what decrypts it).
EXCLUDED = frozenset({"subject_keys", "key_epochs"})
# Rows here record erasures and deletions: kept even while their tenant is being erased.
RECORDS = frozenset({"erasure_receipts", "memory_tombstones", "message_tombstones"})
OWNER = "_owner"


@dataclass(frozen=True)
class TableSpec:
    """How one table is read, owned and written back."""

    table: Table
    # "self": the row's own subject_id; "session": its session's; None: no subject.
    owner: str | None

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def columns(self) -> list[Column[Any]]:
        return list(self.table.columns)

    @property
    def pk_positions(self) -> list[int]:
        names = [column.name for column in self.columns]
        return [names.index(column.name) for column in self.table.primary_key.columns]

    @property
    def has_expiry(self) -> bool:
        return "expires_at" in self.table.c

    def select_rows(self) -> Select[Any]:
        """Every row in primary-key order, JSON as text, the owner's subject_id last."""
        values: list[ColumnElement[Any]] = [_as_read(column) for column in self.columns]
        ordered = list(self.table.primary_key.columns)
        if self.owner == "session":
            sessions = db.sessions
            joined = self.table.outerjoin(
                sessions,
                and_(
                    sessions.c.tenant == self.table.c.tenant,
                    sessions.c.session_id == self.table.c.session_id,
                ),
            )
            return (
                select(*values, sessions.c.subject_id.label(OWNER))
                .select_from(joined)
                .order_by(*ordered)
            )
        if self.owner == "self":
            return select(*values, self.table.c.subject_id.label(OWNER)).order_by(*ordered)
        return select(*values).order_by(*ordered)

    def writable(self) -> Table:
        """The table with its JSON columns typed as text: a restore inserts the stored text."""
        return _writable(self.table)


def _as_read(column: Column[Any]) -> ColumnElement[Any]:
    # JSON (and PostgreSQL's JSONB, a subclass) as its stored text.
    if isinstance(column.type, JSON):
        return cast(column, Text).label(column.name)
    return column


_WRITABLE: dict[str, Table] = {}


def _writable(table: Table) -> Table:
    if table.name not in _WRITABLE:
        columns = []
        for column in table.columns:
            kind = Text() if isinstance(column.type, JSON) else column.type
            columns.append(Column(column.name, kind))
        _WRITABLE[table.name] = Table(table.name, MetaData(), *columns)
    return _WRITABLE[table.name]


def _spec(table: Table) -> TableSpec:
    names = set(table.c.keys())
    if "subject_id" in names:
        return TableSpec(table, "self")
    if "session_id" in names:
        return TableSpec(table, "session")
    return TableSpec(table, None)


SPECS: tuple[TableSpec, ...] = tuple(
    _spec(table) for table in db.metadata.sorted_tables if table.name not in EXCLUDED
)
BY_NAME = {spec.name: spec for spec in SPECS}


# --- the row codec ------------------------------------------------------------------------


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def plain_values(spec: TableSpec) -> Callable[[Sequence[Any]], list[Any]]:
    """A row's values as JSON can carry them: timestamps and dates as ISO 8601."""
    temporal = [
        i for i, column in enumerate(spec.columns) if isinstance(column.type, Date | DateTime)
    ]

    def plain(values: Sequence[Any]) -> list[Any]:
        out = list(values)
        for i in temporal:
            if out[i] is not None:
                out[i] = out[i].isoformat()
        return out

    return plain


def encode_row(plain: list[Any]) -> bytes:
    """One row's exact JSON (no spaces; non-ASCII kept as UTF-8)."""
    return _JSON.encode(plain).encode()


def encode_key(plain: Sequence[Any], positions: Sequence[int]) -> bytes:
    """The primary key's values joined by NUL (ids never hold one; no key has a timestamp, so
    a value reads the same from the database and from the backup's JSON)."""
    return "\x00".join([str(plain[i]) for i in positions]).encode()


def _decoder(column: Column[Any]) -> Callable[[Any], Any]:
    if isinstance(column.type, DateTime):
        return lambda value: None if value is None else datetime.fromisoformat(value)
    if isinstance(column.type, Date):
        return lambda value: None if value is None else date.fromisoformat(value)
    return lambda value: value


def row_decoder(spec: TableSpec) -> Callable[[list[Any]], dict[str, Any]]:
    """Decoded JSON array -> the column values a restore inserts."""
    names = [column.name for column in spec.columns]
    decoders = [_decoder(column) for column in spec.columns]

    def decode(values: list[Any]) -> dict[str, Any]:
        if len(values) != len(names):
            raise ValueError(f"{spec.name}: a row has {len(values)} values, not {len(names)}")
        return {name: fn(value) for name, fn, value in zip(names, decoders, values, strict=True)}

    return decode
