"""LangChain messages as memscribe messages and back (``MemscribeChatMessageHistory``).

A memscribe message has a role (user, assistant, system, tool), text content and JSON
metadata. What LangChain needs beyond that to rebuild an equal message (its type when the
role's usual class is not it, ``tool_call_id``, ``tool_calls``, ``name``,
``additional_kwargs``, ``response_metadata``, list content, ...) travels in the metadata
under ``"langchain"``: the message's own fields as JSON (``model_dump(mode="json")``), only
those that differ from their defaults, without ``content`` and ``id`` (memscribe keeps them).
JSON only: the metadata limit (``MEMSCRIBE_MAX_METADATA_BYTES``) applies, and
``append_many`` names the message that breaks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.messages import BaseMessage, ChatMessage, SystemMessage, messages_from_dict

from core.errors import ValidationError
from core.models import Context, Message

LANGCHAIN_KEY = "langchain"
# The id prefix of the summary message ``messages`` starts with (never stored as a message).
SUMMARY_ID_PREFIX = "memscribe-summary-"

# LangChain's message type (chunks by the type they stream) -> memscribe's role.
_ROLE_OF_TYPE = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
}
# A ChatMessage carries its role as text.
_ROLE_OF_CHAT_ROLE = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
}
# memscribe's role -> the LangChain type a message of that role is rebuilt as by default.
_TYPE_OF_ROLE = {"user": "human", "assistant": "ai", "system": "system", "tool": "tool"}
_CHUNK = "MessageChunk"


def to_append(message: BaseMessage, *, field: str) -> dict[str, Any]:
    """``message`` as one of ``append_many``'s mappings; ``field`` names it in errors."""
    if not isinstance(message, BaseMessage):
        raise ValidationError(field, f"must be a LangChain message, got {type(message).__name__}")
    kind = message.type
    if isinstance(message, ChatMessage):
        role = _ROLE_OF_CHAT_ROLE.get(message.role)
        if role is None:
            raise ValidationError(
                f"{field}.role",
                f"a ChatMessage role must be one of {', '.join(_ROLE_OF_CHAT_ROLE)}; "
                f"got {message.role!r}",
            )
    else:
        # "AIMessageChunk" -> "ai": a chunk is stored with its type, under its message's role.
        base = kind.removesuffix(_CHUNK).lower() if kind.endswith(_CHUNK) else kind
        found = _ROLE_OF_TYPE.get(base)
        if found is None:
            raise ValidationError(
                f"{field}.type",
                f"must be one of {', '.join(_ROLE_OF_TYPE)} (or their chunks, or chat); "
                f"got {kind!r}",
            )
        role = found
    data = message.model_dump(mode="json", exclude_defaults=True)
    data.pop("id", None)
    data.pop("type", None)
    content = data.pop("content", message.content)
    if isinstance(message.content, str):
        text = message.content
    else:
        # Content blocks (multimodal): memscribe keeps their text; the blocks ride along.
        text = _text_of(message.content)
        data["content"] = content
    if kind != _TYPE_OF_ROLE[role]:
        data["type"] = kind
    return {
        "role": role,
        "content": text,
        "message_id": message.id,
        "metadata": {LANGCHAIN_KEY: data} if data else None,
    }


def from_stored(message: Message) -> BaseMessage:
    """A stored message as the LangChain message it was added as (``id``: its message_id).

    A message appended without LangChain (``MemoryClient.append``) comes back as its role's
    usual class; a tool message takes ``tool_call_id`` from its metadata, if any."""
    metadata = message.metadata or {}
    stored = metadata.get(LANGCHAIN_KEY)
    data: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
    kind = data.pop("type", _TYPE_OF_ROLE[message.role])
    data.setdefault("content", message.content)
    if kind == "tool" and "tool_call_id" not in data:
        data["tool_call_id"] = str(metadata.get("tool_call_id", ""))
    data["id"] = message.message_id
    [rebuilt] = messages_from_dict([{"type": kind, "data": data}])
    return rebuilt


def as_langchain(context: Context) -> list[BaseMessage]:
    """A session's context as LangChain messages: the summary first (as a ``SystemMessage``,
    the way LangChain's summary-buffer memory puts it), then the messages after it."""
    messages = [from_stored(message) for message in context.messages]
    if context.summary is None:
        return messages
    summary = SystemMessage(
        content=context.summary, id=f"{SUMMARY_ID_PREFIX}{context.covers_through_seq}"
    )
    return [summary, *messages]


def is_summary(message: object) -> bool:
    """True for the summary message ``as_langchain`` made: written back (as
    ``RunnableWithMessageHistory`` may, when the history changed during a call), it is
    skipped rather than stored as a system message."""
    return isinstance(message, SystemMessage) and (message.id or "").startswith(SUMMARY_ID_PREFIX)


@contextmanager
def named_as_given(given: list[int]) -> Iterator[None]:
    """``append_many`` names a message by its place in the batch; ``given[i]`` is where the
    batch's message ``i`` was in what the caller passed (summary messages are left out), so
    the error names the message the caller knows."""
    try:
        yield
    except ValidationError as exc:
        found = re.fullmatch(r"messages\[(\d+)\](.*)", exc.field)
        if found is None or given == list(range(len(given))):
            raise
        field = f"messages[{given[int(found[1])]}]{found[2]}"
        raise ValidationError(field, str(exc).split(": ", 1)[1]) from None


def _text_of(blocks: list[str | dict[Any, Any]]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "".join(parts)
