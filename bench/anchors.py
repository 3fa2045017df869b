"""Real libraries memscribe is measured against (the ``bench`` extra), when installed."""

from __future__ import annotations

from collections.abc import Callable


def langchain_add_message(url: str, ttl_s: int) -> tuple[str, Callable[[int], object]]:
    """The real ``RedisChatMessageHistory.add_message`` (bench extra), or say it is missing."""
    try:
        from langchain_community.chat_message_histories import RedisChatMessageHistory
        from langchain_core.messages import HumanMessage
    except ImportError:
        return "", lambda _i: None
    histories = [
        RedisChatMessageHistory(f"lc-{i}", url=url, key_prefix="bench:lc:", ttl=ttl_s)
        for i in range(20)
    ]

    def add(i: int) -> object:
        histories[i % len(histories)].add_message(HumanMessage(content=f"message {i}"))
        return None

    return "LangChain RedisChatMessageHistory.add_message (real library, ttl set)", add
