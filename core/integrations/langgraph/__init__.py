"""LangGraph adapters (``pip install 'memscribe[langgraph]'``, docs/langgraph.md)."""

from __future__ import annotations

from core.integrations.langgraph.saver import MemscribeSaver

__all__: list[str] = ["MemscribeSaver"]
