-- Put one LangGraph checkpoint and the blobs of the channels it changed: one EVALSHA, one slot.
-- KEYS[1] index (zset, score 0, member "<ns>\0<checkpoint id>")  KEYS[2] records (hash
--   member -> record JSON)  KEYS[3] blobs (hash "<ns>\0<channel>\0<version>" -> "<type>|<b64>")
--   KEYS[4] writes (hash)  KEYS[5] writes index (zset)  KEYS[6] clock (hash: "hw" the newest
--   write's time, "floor" the last delete_thread's)  KEYS[7] WAL  KEYS[8] tenant bytes
--   KEYS[9] pressure flag  KEYS[10] the shard's set of the tenant's threads  KEYS[11] the
--   shard's set of the threads of the checkpoint's run (delete_for_runs' index)  KEYS[12] the
--   shard's set of the threads of the checkpoint's data subject (erase_subject's index)
-- ARGV: tenant, thread, ns, checkpoint id, record JSON, blobs JSON ([[channel, version, type,
--   b64], ...]), ttl_s, clock ttl_s, max_wal_backlog, tenant budget bytes, reserve ratio,
--   the run id ('' for none), the subject id ('' for none).
-- Returns the write's time in microseconds (Redis's clock, never at or below the thread's
-- newest write or deletion floor).
local index, records, blobs, clock, wal = KEYS[1], KEYS[2], KEYS[3], KEYS[6], KEYS[7]
local tenant, ns, record, blob_json = ARGV[1], ARGV[3], ARGV[5], ARGV[6]

if redis.call('EXISTS', KEYS[9]) == 1 then
  return redis.error_reply('BACKPRESSURE memory Redis memory is past its threshold')
end
local size = #record + #blob_json + 8
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
  if held + size > budget or (backlog_max > 0 and backlog >= backlog_max * (1 - reserve)
      and held >= budget * (1 - reserve)) then
    return redis.error_reply('QUOTA tenant ' .. tenant .. ' holds ' .. held
      .. ' bytes not yet durable (budget ' .. budget .. ' on this shard)')
  end
end

-- Everything that can fail runs before the first write: a script that errors keeps the
-- writes it made, and a put must land whole or not at all.
local decoded = cjson.decode(blob_json)

local now = redis.call('TIME')
local written = tonumber(now[1]) * 1000000 + tonumber(now[2])
local seen = redis.call('HMGET', clock, 'hw', 'floor')
local last = math.max(tonumber(seen[1]) or 0, tonumber(seen[2]) or 0)
if written <= last then
  written = last + 1
end
local stamp = string.format('%.0f', written)
redis.call('HSET', clock, 'hw', stamp)

local member = ns .. '\0' .. ARGV[4]
redis.call('ZADD', index, 0, member)
redis.call('HSET', records, member, record)
for _, blob in ipairs(decoded) do
  -- A channel versioned without a value (LangGraph's triggers such as 'branch:to:agent') has
  -- a null value: stored as '<type>|', which the read hands back as absent.
  local value = blob[4]
  if value == cjson.null then
    value = ''
  end
  redis.call('HSET', blobs, ns .. '\0' .. blob[1] .. '\0' .. blob[2], blob[3] .. '|' .. value)
end
-- 'cp' 1: a checkpoint (w = its time, d = {"r": record, "b": blobs}).
local payload = '{"r":' .. record .. ',"b":' .. blob_json .. '}'
redis.call('XADD', wal, '*', 'k', 'cp', 'v', '1', 't', tenant, 's', ARGV[2], 'w', stamp,
  'd', payload)
redis.call('HINCRBY', KEYS[8], tenant, #payload)
redis.call('SADD', KEYS[10], ARGV[2])
for i = 1, 5 do
  redis.call('EXPIRE', KEYS[i], ARGV[7])
end
redis.call('EXPIRE', clock, ARGV[8])
redis.call('EXPIRE', KEYS[10], ARGV[8])
if ARGV[12] ~= '' then
  redis.call('SADD', KEYS[11], ARGV[2])
  redis.call('EXPIRE', KEYS[11], ARGV[8])
end
if ARGV[13] ~= '' then
  redis.call('SADD', KEYS[12], ARGV[2])
  redis.call('EXPIRE', KEYS[12], ARGV[8])
end
return stamp
