"""Adapters for the frameworks memscribe's users already write their agents with (optional
extras, docs/integrations.md): ``core.integrations.langgraph`` (``memscribe[langgraph]``) and
``core.integrations.langchain`` (``memscribe[langchain]``). The core never imports them."""
