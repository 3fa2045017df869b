"""The shared plumbing every capability stands on: the durable schema and engines, Redis keys,
scripts, connections and error translation, the message record, token counting. Imports
nothing else of core but models and errors."""
