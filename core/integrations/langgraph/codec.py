"""How ``MemscribeSaver`` turns LangGraph's checkpoints, writes and configs into memscribe's
records and back (``core/checkpoints/model.py``): the serializer's bytes as base64, plain
channel values inline, the others blobs keyed by (channel, version). No I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from core.checkpoints.keys import CheckpointKeys
from core.checkpoints.model import (
    EMPTY,
    Blob,
    CheckpointRecord,
    Loaded,
    PendingWrite,
    b64,
    check_checkpoint_id,
    check_metadata,
    check_name,
    check_type,
    unb64,
)
from core.errors import ValidationError
from core.models import validate_id

_PLAIN = (str, int, float, bool)


def configurable_of(config: RunnableConfig | None, name: str = "config") -> dict[str, Any]:
    configurable = (config or {}).get("configurable")
    if not isinstance(configurable, dict) or configurable.get("thread_id") is None:
        raise ValidationError(
            name, "must carry configurable.thread_id (memscribe keeps checkpoints per thread)"
        )
    return configurable


def thread_of(configurable: dict[str, Any]) -> str:
    return str(configurable["thread_id"])


def namespace_of(configurable: dict[str, Any]) -> str:
    return check_name("checkpoint_ns", configurable.get("checkpoint_ns") or "")


def config_for(thread: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
    }


class CheckpointCodec:
    """The conversions, as a mixin of ``MemscribeSaver`` (it provides ``serde``,
    ``subject_key`` and ``_keys``)."""

    serde: SerializerProtocol
    subject_key: str | None

    def _keys(self, thread: str) -> CheckpointKeys:
        raise NotImplementedError

    def _subject(self, configurable: dict[str, Any]) -> str | None:
        if self.subject_key is None or configurable.get(self.subject_key) is None:
            return None
        return validate_id("subject_id", str(configurable[self.subject_key]))

    def _prepare_put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[CheckpointKeys, CheckpointRecord, list[Blob], RunnableConfig]:
        configurable = configurable_of(config)
        thread, ns = thread_of(configurable), namespace_of(configurable)
        keys = self._keys(thread)
        checkpoint_id = check_checkpoint_id("checkpoint.id", checkpoint["id"])
        parent = configurable.get("checkpoint_id")
        inline = dict(checkpoint["channel_values"])
        blobbed: dict[str, Any] = {}
        for channel, value in checkpoint["channel_values"].items():
            if isinstance(value, _DeltaSnapshot):
                blobbed[channel] = inline.pop(channel)
                inline[channel] = True  # PostgresSaver's marker: the blob replaces it on load
            elif value is not None and not isinstance(value, _PLAIN):
                blobbed[channel] = inline.pop(channel)
        blobs = []
        for channel, version in new_versions.items():
            check_name("channel", channel)
            if channel in blobbed:
                kind, data = self.serde.dumps_typed(blobbed[channel])
                blobs.append(Blob(channel, str(version), check_type("type", kind), b64(data)))
            elif channel not in inline:
                blobs.append(Blob(channel, str(version), EMPTY, None))
        kind, data = self.serde.dumps_typed({**checkpoint, "channel_values": inline})
        record = CheckpointRecord(
            ns=ns,
            checkpoint_id=checkpoint_id,
            parent_id=None if parent is None else check_checkpoint_id("parent", str(parent)),
            type=check_type("checkpoint type", kind),
            checkpoint=b64(data),
            metadata=check_metadata(get_serializable_checkpoint_metadata(config, metadata)),
            blobs=tuple(
                (channel, str(version))
                for channel, version in checkpoint["channel_versions"].items()
                if channel not in inline
            ),
            subject_id=self._subject(configurable),
        )
        return keys, record, blobs, config_for(thread, ns, checkpoint_id)

    def _prepare_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> tuple[CheckpointKeys, str, str, list[PendingWrite], bool, str | None]:
        configurable = configurable_of(config)
        thread, ns = thread_of(configurable), namespace_of(configurable)
        checkpoint_id = check_checkpoint_id("checkpoint_id", configurable.get("checkpoint_id"))
        check_name("task_id", task_id)
        check_name("task_path", task_path)
        pending = []
        for idx, (channel, value) in enumerate(writes):
            kind, data = self.serde.dumps_typed(value)
            pending.append(
                PendingWrite(
                    task_id,
                    WRITES_IDX_MAP.get(channel, idx),
                    check_name("channel", channel),
                    check_type("type", kind),
                    b64(data),
                    task_path,
                )
            )
        # Special channels (errors, interrupts) replace what they wrote before, as in
        # LangGraph's own savers; ordinary writes are kept as first written.
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        subject = self._subject(configurable)
        return self._keys(thread), ns, checkpoint_id, pending, replace, subject

    def _tuple(self, thread: str, found: Loaded) -> CheckpointTuple:
        record = found.record
        checkpoint = self.serde.loads_typed((record.type, unb64(record.checkpoint)))
        values = {
            channel: self.serde.loads_typed((kind, unb64(data)))
            for channel, (kind, data) in found.values.items()
        }
        checkpoint["channel_values"] = {**(checkpoint.get("channel_values") or {}), **values}
        writes = sorted(found.writes, key=lambda w: writes_sort_key(w.task_path, w.task_id, w.idx))
        return CheckpointTuple(
            config=config_for(thread, record.ns, record.checkpoint_id),
            checkpoint=checkpoint,
            metadata=record.metadata,  # type: ignore[arg-type]
            parent_config=(
                None
                if record.parent_id is None
                else config_for(thread, record.ns, record.parent_id)
            ),
            pending_writes=[
                (w.task_id, w.channel, self.serde.loads_typed((w.type, unb64(w.value))))
                for w in writes
            ],
        )
