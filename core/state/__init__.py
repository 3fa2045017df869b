"""Conversation and agent state beside the messages (docs/state.md)."""
