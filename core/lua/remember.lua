-- Remember one memory of a data subject: the whole request path, one EVALSHA, one slot.
-- KEYS[1] the subject's view (hash: memory_id -> value, see core/memories/records.py)
-- KEYS[2] WAL stream of the shard    KEYS[3] shard hash: memory ids not yet durable
-- KEYS[4] tenant bytes (shard hash)  KEYS[5] pressure flag
-- KEYS[6] accessed (hash)            KEYS[7] embeddings (hash)
-- ARGV: memory_id, live value ("<priority><pinned>|<json>"), tenant, member
--   ("<tenant>/<subject_id>"), view ttl_s, max_wal_backlog (0 = none), tenant budget bytes
--   (0 = none), tenant reserve ratio, decay_s (0 = never), restore ('' or '1'), then with
--   restore the view as the durable store knows it: (memory_id, value) pairs.
-- Returns {0} written, {1} a memory with this id exists (nothing written), or {-1} when the
-- view is not in Redis and no restore was given: the caller reads the store and calls again.
local view, wal, pending, tenant_bytes, pressure = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, value, tenant, member, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if redis.call('HEXISTS', view, '~') == 0 then
  if ARGV[10] ~= '1' then
    return {-1}
  end
  for i = 11, #ARGV, 2 do
    redis.call('HSETNX', view, ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', view, '~', '1')
end
-- Idempotent on the id: a retry, or an id already forgotten or merged, writes nothing.
if redis.call('HEXISTS', view, id) == 1 then
  return {1}
end

local record = string.sub(value, 4)
if redis.call('EXISTS', pressure) == 1 then
  return redis.error_reply('BACKPRESSURE memory Redis memory is past its threshold')
end
local backlog_max = tonumber(ARGV[6])
local backlog = redis.call('XLEN', wal)
if backlog_max > 0 and backlog + 1 > backlog_max then
  return redis.error_reply('BACKPRESSURE backlog ' .. backlog .. ' undrained entries (limit '
    .. backlog_max .. ')')
end
local budget = tonumber(ARGV[7])
if budget > 0 then
  local held = tonumber(redis.call('HGET', tenant_bytes, tenant)) or 0
  local reserve = tonumber(ARGV[8])
  if held + #record > budget or (backlog_max > 0 and backlog >= backlog_max * (1 - reserve)
      and held >= budget * (1 - reserve)) then
    return redis.error_reply('QUOTA tenant ' .. tenant .. ' holds ' .. held
      .. ' bytes not yet durable (budget ' .. budget .. ' on this shard)')
  end
end

-- 'r' 1: a remembered memory (p = priority and pinned, e = decay seconds, d = the record).
local entry = redis.call('XADD', wal, '*', 'k', 'r', 'v', '1', 'p', string.sub(value, 1, 2),
  'e', ARGV[9], 'd', record)
redis.call('HSET', view, id, value, '^', entry)
redis.call('HSET', pending, id, member)
redis.call('HINCRBY', tenant_bytes, tenant, #record)
for _, key in ipairs({view, KEYS[6], KEYS[7]}) do
  redis.call('EXPIRE', key, ttl)
end
return {0}
