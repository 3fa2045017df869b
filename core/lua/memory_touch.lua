-- Count a recall of some of a subject's memories: in Redis now, in the store via the WAL.
-- KEYS[1] accessed (hash: memory_id -> ms), KEYS[2] WAL stream, KEYS[3] the view,
-- KEYS[4] embeddings. ARGV: now_ms, tenant, subject_id, view ttl_s, the accesses as JSON
-- ([[memory_id, decay_s], ...]), then the memory ids.
-- The view's TTL is refreshed here: a subject in use stays in Redis.
local now = ARGV[1]
for i = 6, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], now)
end
-- 'a' 1: accesses (the drainer adds them to access_count and moves last_accessed).
redis.call('XADD', KEYS[2], '*', 'k', 'a', 'v', '1', 't', ARGV[2], 's', ARGV[3], 'ms', now,
  'd', ARGV[5])
for _, key in ipairs({KEYS[1], KEYS[3], KEYS[4]}) do
  redis.call('EXPIRE', key, ARGV[4])
end
return 1
