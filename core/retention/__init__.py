"""Retention: one policy per tenant and kind, expires_at on every row, and the purge
(docs/retention.md)."""
