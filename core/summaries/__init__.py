"""Token-triggered summaries: the summarizer, its LLM backends, their durable history and budgets.
Imports store only."""
