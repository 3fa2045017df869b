"""Long-term memories about a data subject: remember, recall, forget, pin, and consolidation."""
