-- Put one agent result for a session: one EVALSHA, one slot. Idempotent on the result id.
-- KEYS[1] results hash (id -> "<position>|<ms>|<json>", "c:<id>" -> ms consumed, "~" the
--   hash is complete, "#" the last position)  KEYS[2] unconsumed ids (list, oldest first)
--   KEYS[3] consumed ids (list, newest first)  KEYS[4] WAL  KEYS[5] tenant bytes
--   KEYS[6] pressure flag
-- ARGV: result id, result JSON, tenant, session_id, now_ms, ttl_s, max unconsumed,
--   max_wal_backlog, tenant budget bytes, reserve ratio, then '' or '1' (restore) with the
--   durable last position, n unconsumed, n consumed, and (id, value, consumed ms) triples:
--   unconsumed oldest first, then consumed newest first.
-- Returns {0, position} written, {1, position} a result with this id exists, {-1} the
-- results are not in Redis and no restore was given.
local results, unconsumed, consumed, wal = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, json, tenant = ARGV[1], ARGV[2], ARGV[3]

local function restore(at)
  if ARGV[at] ~= '1' then
    return false
  end
  redis.call('DEL', results, unconsumed, consumed)
  redis.call('HSET', results, '~', '1', '#', ARGV[at + 1])
  local waiting, done = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
  local i = at + 4
  for k = 1, waiting + done do
    redis.call('HSET', results, ARGV[i], ARGV[i + 1])
    if k <= waiting then
      redis.call('RPUSH', unconsumed, ARGV[i])
    else
      redis.call('HSET', results, 'c:' .. ARGV[i], ARGV[i + 2])
      redis.call('RPUSH', consumed, ARGV[i])
    end
    i = i + 3
  end
  return true
end

if redis.call('HEXISTS', results, '~') == 0 and not restore(11) then
  return {-1}
end
local existing = redis.call('HGET', results, id)
if existing then
  return {1, tonumber(string.match(existing, '^(%d+)|'))}
end
-- Consumed long ago (its record trimmed, its id still listed): a repeat, not a new result.
if redis.call('LPOS', consumed, id) then
  return {1, 0}
end
local held_results = redis.call('LLEN', unconsumed)
if held_results >= tonumber(ARGV[7]) then
  return redis.error_reply('BACKPRESSURE results session holds ' .. held_results
    .. ' unconsumed results (limit ' .. ARGV[7] .. ')')
end
if redis.call('EXISTS', KEYS[6]) == 1 then
  return redis.error_reply('BACKPRESSURE memory Redis memory is past its threshold')
end
local backlog_max = tonumber(ARGV[8])
local backlog = redis.call('XLEN', wal)
if backlog_max > 0 and backlog + 1 > backlog_max then
  return redis.error_reply('BACKPRESSURE backlog ' .. backlog .. ' undrained entries (limit '
    .. backlog_max .. ')')
end
local budget = tonumber(ARGV[9])
if budget > 0 then
  local held = tonumber(redis.call('HGET', KEYS[5], tenant)) or 0
  local reserve = tonumber(ARGV[10])
  if held + #json > budget or (backlog_max > 0 and backlog >= backlog_max * (1 - reserve)
      and held >= budget * (1 - reserve)) then
    return redis.error_reply('QUOTA tenant ' .. tenant .. ' holds ' .. held
      .. ' bytes not yet durable (budget ' .. budget .. ' on this shard)')
  end
end

local position = redis.call('HINCRBY', results, '#', 1)
redis.call('HSET', results, id, position .. '|' .. ARGV[5] .. '|' .. json)
redis.call('RPUSH', unconsumed, id)
-- 'ar' 1: an agent result (i = id, n = position, d = the result).
redis.call('XADD', wal, '*', 'k', 'ar', 'v', '1', 't', tenant, 's', ARGV[4], 'i', id,
  'n', position, 'ms', ARGV[5], 'd', json)
redis.call('HINCRBY', KEYS[5], tenant, #json)
for _, key in ipairs({results, unconsumed, consumed}) do
  redis.call('EXPIRE', key, ARGV[6])
end
return {0, position}
