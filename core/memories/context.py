"""Long-term memories in a prompt's context: which of the recalled ones fit the budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from core.errors import ValidationError
from core.memories.service import Memories
from core.models import Context, Memory, Priority


def memory_count(memories: object) -> int:
    """``context(memories=k)``'s ``k``, checked before anything is read."""
    if isinstance(memories, bool) or not isinstance(memories, int) or memories < 0:
        raise ValidationError("memories", f"must be an integer >= 0, got {memories!r}")
    return memories


def with_memories(
    context: Context,
    subject_id: str | None,
    service: Memories,
    *,
    tenant: str,
    k: int,
    budget: int,
    count: Callable[[str], int],
) -> Context:
    """``context`` with the top ``k`` memories of the session's subject that fit ``budget``
    tokens, ranked against the newest user message (unchanged for ``k=0`` or no subject)."""
    if not k or subject_id is None:
        return context
    chosen = fit_budget(
        service.recall(subject_id, tenant=tenant, query=last_user_text(context), k=k),
        budget=budget,
        count=count,
    )
    used = sum(tokens for _, tokens in chosen)
    return replace(
        context,
        memories=[memory for memory, _ in chosen],
        memory_tokens=used,
        tokens=context.tokens + used,
    )


def fit_budget(
    recalled: Sequence[Memory], *, budget: int, count: Callable[[str], int]
) -> list[tuple[Memory, int]]:
    """The recalled memories that fit ``budget`` tokens, in recall order, with their tokens.

    When they do not all fit, lower priorities go first (the lowest-ranked of a priority
    before its better-ranked ones); CRITICAL memories are kept whatever they cost.
    """
    sized = [(memory, count(memory.content)) for memory in recalled]
    total = sum(tokens for _, tokens in sized)
    order = sorted(
        range(len(sized)), key=lambda i: (sized[i][0].level, -i)
    )  # lowest priority, then worst rank, first
    dropped: set[int] = set()
    for index in order:
        if total <= budget:
            break
        memory, tokens = sized[index]
        if memory.level is Priority.CRITICAL:
            continue
        dropped.add(index)
        total -= tokens
    return [pair for index, pair in enumerate(sized) if index not in dropped]


def last_user_text(context: Context) -> str | None:
    """The newest user message: what the memories are ranked against."""
    for message in reversed(context.messages):
        if message.role == "user" and message.content.strip():
            return message.content
    return None
