"""Clearing and erasure: clear_session, delete_message, erase_subject, erase_tenant, receipts,
verify and export (docs/erasure.md)."""
