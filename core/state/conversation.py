"""``ConversationState``: one session's state as the app holds it, with dirty tracking.

The object remembers the JSON of every field as it was loaded (or last saved). ``save()``
compares, and sends only the fields whose JSON changed, in one ``EVALSHA`` that checks the
version it was loaded at; when nothing changed it makes no Redis call at all. Fields may be
reassigned or changed in place (``state.context["lang"] = "fr"``): both are seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from core.state import tasks as task_stack
from core.state.model import EMPTY, FIELDS, check_field, encode
from core.state.store import Read, Snapshot, StateStore
from core.store.keys import StateKeys


class ConversationState:
    """A session's conversation state: ``subject``, ``data`` (the app's JSON object, checked
    against its ``StateSchema``), ``tasks`` (the task stack), ``evaluation`` (checkpoint
    evaluation progress), ``context``, ``temp`` (temporary context); ``version``; ``save()``.

    ``level`` says where the load was answered (local, redis, durable) and ``degraded`` that
    Redis was unavailable (the copy may be behind; ``save()`` will fail fast until it is back).
    """

    subject: str | None
    data: dict[str, Any]
    tasks: list[dict[str, Any]]
    evaluation: dict[str, Any]
    context: dict[str, Any]
    temp: dict[str, Any]

    def __init__(self, store: StateStore, keys: StateKeys, read: Read) -> None:
        self._store = store
        self._keys = keys
        self._adopt(read)

    def _adopt(self, read: Read) -> None:
        snapshot = read.snapshot
        self.version = snapshot.version
        self.level = read.level
        self.degraded = read.degraded
        self._loaded = dict(snapshot.fields)
        for name in FIELDS:
            encoded = snapshot.fields.get(name, "")
            value = json.loads(encoded) if encoded else json.loads(encode(EMPTY[name]))
            setattr(self, name, value)
        written_by = snapshot.schema_version
        # Data written under an older schema is migrated now and written back by save().
        self.data = self._store.upgrade(self.data, written_by)
        self._schema_pending = written_by != self._store.schema_version and self.version > 0

    @property
    def session_id(self) -> str:
        return self._keys.session_id

    @property
    def tenant(self) -> str:
        return self._keys.tenant

    def dirty_fields(self) -> list[str]:
        """The fields whose JSON differs from what was loaded or last saved."""
        changed = [name for name in FIELDS if encode(getattr(self, name)) != self._current(name)]
        if self._schema_pending and "data" not in changed:
            changed.append("data")
        return changed

    def _current(self, name: str) -> str:
        return self._loaded.get(name) or encode(EMPTY[name])

    def save(self, *, actor: str | None = None) -> int:
        """Write the changed fields; returns the version. No Redis call when nothing changed.

        Raises ``ValidationError`` (nothing written) for a field that breaks its rule,
        ``ConflictError`` when another writer saved since this state was loaded (``reload()``
        and apply the change again, or use ``MemoryClient.update_state``), ``TransientError``
        while Redis is unavailable.
        """
        dirty = self.dirty_fields()
        if not dirty:
            return self.version
        limit = self._store.settings.state_max_field_bytes
        if "data" in dirty:
            self.data = self._store.validate(self.data)
        if "tasks" in dirty:
            self._check_tasks()
        changes = {name: check_field(name, getattr(self, name), max_bytes=limit) for name in dirty}
        base = Snapshot(self.version, self._store.schema_version, dict(self._loaded))
        self.version = self._store.patch(
            self._keys,
            changes,
            expected=self.version,
            actor=actor,
            schema_version=self._store.schema_version,
            base=base,
        )
        self._loaded.update(changes)
        self._schema_pending = False
        self.degraded = False
        return self.version

    def reload(self) -> ConversationState:
        """Load the current version, dropping unsaved changes."""
        self._adopt(self._store.read(self._keys))
        return self

    # --- the task stack -----------------------------------------------------------------------

    def push_task(
        self,
        title: str,
        checkpoints: Iterable[str] = (),
        *,
        task_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Put a new task (pending, with pending checkpoints "1".."n") on top of the stack."""
        settings = self._store.settings
        task = task_stack.new_task(
            title,
            checkpoints,
            max_checkpoints=settings.state_max_checkpoints,
            task_id=task_id,
            data=data,
        )
        task_stack.push(self.tasks, task, max_tasks=settings.state_max_tasks)
        return task

    def pop_task(self) -> dict[str, Any] | None:
        """Take the top task off the stack (None when empty)."""
        return self.tasks.pop() if self.tasks else None

    @property
    def current_task(self) -> dict[str, Any] | None:
        """The topmost task that is not complete."""
        return task_stack.current(self.tasks)

    def set_task_status(self, task_id: str, status: str) -> None:
        task_stack.set_status(self.tasks, task_id, status)

    def set_checkpoint_status(self, task_id: str, checkpoint_id: str, status: str) -> None:
        """Move a checkpoint; its task follows (in progress with it, complete with the last)."""
        task_stack.set_checkpoint(self.tasks, task_id, checkpoint_id, status)

    def _check_tasks(self) -> None:
        # The stack may have been assigned wholesale: hold it to the same rules.
        settings = self._store.settings
        task_stack.check_stack(
            self.tasks,
            max_tasks=settings.state_max_tasks,
            max_checkpoints=settings.state_max_checkpoints,
        )

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS} | {"version": self.version}

    def __repr__(self) -> str:
        return (
            f"ConversationState(session_id={self.session_id!r}, version={self.version}, "
            f"level={self.level!r}, degraded={self.degraded}, dirty={self.dirty_fields()})"
        )
