"""The write path: append, the write-ahead log and its drain into the durable store, dead letters,
backpressure. Imports sessions and store, never summaries or the client."""
