-- Patch a session's conversation state: the whole write path, one EVALSHA, one slot.
-- Version check, apply only the fields given, and a WAL entry (kind st) the drainer writes
-- into sessions.state and state_history, in version order.
-- KEYS[1] state hash ("v", "sc", "f:subject", "f:data", "k:<kind>")  KEYS[2..5] the kinds'
--   strings (tasks, evaluation, context, temp)  KEYS[6] WAL  KEYS[7] state high water (shard
--   hash)  KEYS[8] tenant bytes  KEYS[9] pressure flag
-- ARGV: expected version ('' = none), tenant, member, session_id, actor, now_ms, schema
--   version, max_wal_backlog (0 = none), tenant budget bytes (0 = none), reserve ratio,
--   5 TTLs (state, tasks, evaluation, context, temp), n changes, n (field, json) pairs, then
--   '' or '1' (restore) and with it the durable version, schema and (field, json) pairs.
-- Returns {0, version} written; {-1} Redis does not hold the state and no restore was given;
-- {-2, current version, current data, schema} a version conflict (nothing written); {-3, version}
-- the durable store is behind what the WAL still holds (nothing written, retry shortly).
local main, wal, hw, tenant_bytes, pressure = KEYS[1], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local tenant, member, session, actor = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local KIND_KEY = {tasks = 2, evaluation = 3, context = 4, temp = 5}
local TTL = {state = ARGV[11], tasks = ARGV[12], evaluation = ARGV[13], context = ARGV[14],
  temp = ARGV[15]}
local n = tonumber(ARGV[16])
local rest = 17 + 2 * n

local function store(field, json, version)
  local slot = KIND_KEY[field]
  if slot then
    redis.call('SET', KEYS[slot], json, 'EX', TTL[field])
    redis.call('HSET', main, 'k:' .. field, version)
  else
    redis.call('HSET', main, 'f:' .. field, json)
  end
end

if redis.call('EXISTS', main) == 0 then
  if ARGV[rest] ~= '1' then
    return {-1}
  end
  local durable = tonumber(ARGV[rest + 1])
  local pending = tonumber(redis.call('HGET', hw, member))
  if pending and pending > durable then
    return {-3, pending}
  end
  redis.call('HSET', main, 'v', durable, 'sc', ARGV[rest + 2])
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  for i = rest + 3, #ARGV, 2 do
    store(ARGV[i], ARGV[i + 1], durable)
  end
end

local version = tonumber(redis.call('HGET', main, 'v'))
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= version then
  return {-2, version, redis.call('HGET', main, 'f:data') or '', redis.call('HGET', main, 'sc')}
end

local parts, size = {}, 0
for i = 17, rest - 1, 2 do
  parts[#parts + 1] = '"' .. ARGV[i] .. '":' .. ARGV[i + 1]
end
local changes = '{' .. table.concat(parts, ',') .. '}'
if redis.call('EXISTS', pressure) == 1 then
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
  local held = tonumber(redis.call('HGET', tenant_bytes, tenant)) or 0
  local reserve = tonumber(ARGV[10])
  if held + #changes > budget or (backlog_max > 0 and backlog >= backlog_max * (1 - reserve)
      and held >= budget * (1 - reserve)) then
    return redis.error_reply('QUOTA tenant ' .. tenant .. ' holds ' .. held
      .. ' bytes not yet durable (budget ' .. budget .. ' on this shard)')
  end
end

local new = version + 1
-- 'st' 1: n = new version (the old one is n - 1), a = actor, sc = schema, d = the changes.
redis.call('XADD', wal, '*', 'k', 'st', 'v', '1', 't', tenant, 's', session, 'n', new,
  'a', actor, 'ms', ARGV[6], 'sc', ARGV[7], 'd', changes)
for i = 17, rest - 1, 2 do
  store(ARGV[i], ARGV[i + 1], new)
end
redis.call('HSET', main, 'v', new, 'sc', ARGV[7])
redis.call('HSET', hw, member, new)
redis.call('HINCRBY', tenant_bytes, tenant, #changes)
redis.call('EXPIRE', main, TTL.state)
return {0, new}
