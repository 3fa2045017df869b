-- The tombstone of a subject's erasure, set in one call in the subject's slot
-- (core/erasure/subject.py), after the store has tombstoned the subject's memory ids: the
-- subject's memory view, recall counts, embeddings and consolidation lease go (so recall
-- returns nothing of before, and a consolidation in flight fails its compare-and-set), and
-- the tombstone, named by the subject's keyed hash, records the receipt and the time.
-- KEYS[1] view  KEYS[2] recall counts  KEYS[3] embeddings  KEYS[4] consolidation lease
-- KEYS[5] tombstone
-- ARGV: receipt id, tombstone TTL (s), now ms
-- Returns the number of memories the view held.
local held = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('SET', KEYS[5], ARGV[1] .. '|' .. ARGV[3], 'EX', ARGV[2])
return held
