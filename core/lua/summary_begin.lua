-- Start a summarize: take the session's summary lease with a fresh fencing token and read
-- what the fold needs, in one call.
-- KEYS[1] meta, KEYS[2] buffer, KEYS[3] summary lease, KEYS[4] session config,
-- KEYS[5] pending index, KEYS[6] summary draft. ARGV[1] lease ms, ARGV[2] member.
-- Returns {0, 'gone'|'idle'} (nothing to do), {-1, lease pttl} (another summarize holds the
-- session), or {token, meta, buffer, config, draft}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[5], ARGV[2])
  return {0, 'gone'}
end
if not redis.call('HGET', KEYS[1], 'pend') then
  -- No crossing and no request outstanding: a duplicate task (a replayed WAL batch) or one
  -- whose summary another task already made.
  return {0, 'idle'}
end
local held = redis.call('PTTL', KEYS[3])
if held ~= -2 then
  return {-1, held}
end
-- The fencing token only grows (it lives in meta, not in the lease that expires), so a
-- holder whose lease expired mid-call can never commit over its successor.
local token = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('SET', KEYS[3], token, 'PX', ARGV[1])
return {
  token,
  redis.call('HGETALL', KEYS[1]),
  redis.call('LRANGE', KEYS[2], 0, -1),
  redis.call('HGETALL', KEYS[4]),
  redis.call('HGETALL', KEYS[6]),
}
