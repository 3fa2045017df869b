"""LangGraph checkpoints, write-behind (docs/langgraph.md): a checkpoint, its channel blobs
and pending writes go to Redis in one EVALSHA and reach PostgreSQL through the sharded WAL and
the drainers, like messages. ``core.integrations.langgraph.MemscribeSaver`` is the adapter."""
