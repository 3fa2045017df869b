"""LangChain adapters (``pip install 'memscribe[langchain]'``, docs/integrations.md)."""

from __future__ import annotations

__all__: list[str] = []
