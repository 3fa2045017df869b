-- Ask for a summary now (MemoryClient.request_summary), or take the request back when the
-- task could not be sent. Idempotent while a summary is pending.
-- KEYS[1] meta, KEYS[2] pending index
-- ARGV: op ('request' | 'cancel'), now_ms, pending_timeout_ms, member, stamp (cancel)
-- request returns -1 (no such session in Redis), 0 (one is pending already) or the stamp.
local meta = KEYS[1]
if ARGV[1] == 'cancel' then
  if redis.call('HGET', meta, 'pend') == ARGV[5] then
    redis.call('HDEL', meta, 'pend')
    redis.call('ZREM', KEYS[2], ARGV[4])
    return 1
  end
  return 0
end
if redis.call('EXISTS', meta) == 0 then
  return -1
end
local now = tonumber(ARGV[2])
local until_ms = tonumber(redis.call('HGET', meta, 'pend'))
if until_ms and until_ms > now then
  return 0
end
local stamp = now + tonumber(ARGV[3])
redis.call('HSET', meta, 'pend', stamp)
redis.call('HINCRBY', meta, 'rq', 1)
redis.call('ZADD', KEYS[2], now, ARGV[4])
return stamp
