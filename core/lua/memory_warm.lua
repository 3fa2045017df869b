-- Fill a subject's view from the durable store unless it is already complete.
-- KEYS[1] the view, KEYS[2] accessed, KEYS[3] embeddings. ARGV: view ttl_s, n view pairs,
-- then n (memory_id, value) pairs, then (memory_id, embedding JSON) pairs.
-- HSETNX: anything already in the view (a remember that raced this warm-up) is newer.
local view = KEYS[1]
if redis.call('HEXISTS', view, '~') == 1 then
  return 0
end
local n = tonumber(ARGV[2])
for i = 3, 2 + 2 * n, 2 do
  redis.call('HSETNX', view, ARGV[i], ARGV[i + 1])
end
for i = 3 + 2 * n, #ARGV, 2 do
  redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', view, '~', '1')
for _, key in ipairs(KEYS) do
  redis.call('EXPIRE', key, ARGV[1])
end
return 1
