"""LangChain adapters (``pip install 'memscribe[langchain]'``, docs/integrations.md)."""

from __future__ import annotations

from core.integrations.langchain.history import MemscribeChatMessageHistory

__all__: list[str] = [
    "MemscribeChatMessageHistory",
]
