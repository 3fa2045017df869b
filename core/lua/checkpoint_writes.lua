-- Put a task's pending writes for one checkpoint: one EVALSHA, one slot.
-- KEYS as checkpoint_put.lua. ARGV: tenant, thread, ns, checkpoint id, writes JSON
--   ([[task_id, idx, channel, type, b64, task_path], ...]), '1' to replace existing writes
--   (every channel is a special one: errors, interrupts) or '0' to keep them, ttl_s, clock
--   ttl_s, max_wal_backlog, tenant budget bytes, reserve ratio, the subject id ('' for none).
-- Returns the write's time in microseconds.
local index, writes, write_index, clock, wal = KEYS[1], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local tenant, ns, cid, writes_json, replace = ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

if redis.call('EXISTS', KEYS[9]) == 1 then
  return redis.error_reply('BACKPRESSURE memory Redis memory is past its threshold')
end
local backlog_max = tonumber(ARGV[9])
local backlog = redis.call('XLEN', wal)
if backlog_max > 0 and backlog + 1 > backlog_max then
  return redis.error_reply('BACKPRESSURE backlog ' .. backlog .. ' undrained entries (limit '
    .. backlog_max .. ')')
end
local budget = tonumber(ARGV[10])
if budget > 0 then
  local held = tonumber(redis.call('HGET', KEYS[8], tenant)) or 0
  local reserve = tonumber(ARGV[11])
  if held + #writes_json > budget or (backlog_max > 0 and backlog >= backlog_max * (1 - reserve)
      and held >= budget * (1 - reserve)) then
    return redis.error_reply('QUOTA tenant ' .. tenant .. ' holds ' .. held
      .. ' bytes not yet durable (budget ' .. budget .. ' on this shard)')
  end
end

-- Everything that can fail runs before the first write (see checkpoint_put.lua).
local decoded = cjson.decode(writes_json)
local fields = {}
for i, w in ipairs(decoded) do
  fields[i] = string.format('%d', w[2])
end

local now = redis.call('TIME')
local written = tonumber(now[1]) * 1000000 + tonumber(now[2])
local seen = redis.call('HMGET', clock, 'hw', 'floor')
local last = math.max(tonumber(seen[1]) or 0, tonumber(seen[2]) or 0)
if written <= last then
  written = last + 1
end
local stamp = string.format('%.0f', written)
redis.call('HSET', clock, 'hw', stamp)

local prefix = ns .. '\0' .. cid .. '\0'
for i, w in ipairs(decoded) do
  local field = prefix .. w[1] .. '\0' .. fields[i]
  local value = cjson.encode(w)
  if replace == '1' then
    redis.call('HSET', writes, field, value)
  else
    redis.call('HSETNX', writes, field, value)
  end
  redis.call('ZADD', write_index, 0, field)
end
-- 'cw' 1: pending writes (w = their time, d = {"ns", "id", "u" replace, "sub", "w": writes}).
local subject = ARGV[12] == '' and 'null' or cjson.encode(ARGV[12])
local payload = '{"ns":' .. cjson.encode(ns) .. ',"id":' .. cjson.encode(cid) .. ',"u":'
  .. (replace == '1' and 'true' or 'false') .. ',"sub":' .. subject .. ',"w":' .. writes_json
  .. '}'
redis.call('XADD', wal, '*', 'k', 'cw', 'v', '1', 't', tenant, 's', ARGV[2], 'w', stamp,
  'd', payload)
redis.call('HINCRBY', KEYS[8], tenant, #payload)
for i = 1, 5 do
  redis.call('EXPIRE', KEYS[i], ARGV[7])
end
redis.call('EXPIRE', clock, ARGV[8])
return stamp
