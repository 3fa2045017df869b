"""LangChain adapters (``pip install 'memscribe[langchain]'``, docs/integrations.md)."""

from __future__ import annotations

from core.integrations.langchain.history import MemscribeChatMessageHistory
from core.integrations.langchain.store import MemscribeStore

__all__: list[str] = ["MemscribeChatMessageHistory", "MemscribeStore"]
