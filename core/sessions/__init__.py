"""Sessions Redis has forgotten (restore from the durable store) and their per-session settings.
Imports summaries (the durable read) and store."""
