-- Append one chat message. The whole request path: one EVALSHA, one slot.
-- KEYS[1] meta hash     (seq; tok = tokens in the buffer; utok = tokens after the summary;
--                        cov = covers_through_seq; pend = pending-until ms; xc = crossings; sub)
-- KEYS[2] buffer list   (unsummarized recent messages, oldest first; items "seq:tokens:json")
-- KEYS[3] recent ids    (sorted set message_id -> seq; makes a retried append a no-op)
-- KEYS[4] WAL stream    (the shard's write-ahead log, drained into the durable store)
-- KEYS[5] session config (per-session overrides: trigger, max_messages, max_tokens)
-- KEYS[6] pending index (the shard's sessions with a summary pending: member -> ms)
-- KEYS[7] high water    (shard hash: member -> newest seq not yet durable; the drainer clears it)
-- KEYS[8] tenant bytes  (shard hash: tenant -> bytes of its WAL entries not yet drained)
-- KEYS[9] pressure flag (set by drainers while Redis memory is past its threshold)
-- ARGV: message_id ('' = restore only), json, tokens, buffer_max_messages, ttl_s,
--       dedupe_window, subject_id ('' = none), summary_trigger_tokens, buffer_max_tokens, now_ms,
--       pending_timeout_ms, member ("tenant/session_id"), tenant, max_wal_backlog (0 = none),
--       tenant_budget_bytes (0 = none), tenant_reserve_ratio, restore ('' or '1'), then with
--       restore: the session as the durable store knows it (see restore() below).
--       The numbers are the global defaults; KEYS[5] overrides them.
-- Returns {seq, duplicate (0/1), buffered tokens, unsummarized tokens, crossed (0/1)}, or
-- {-1, high water} when the session is not in Redis and no restore was given: the caller reads
-- the durable store and calls again with it (a forgotten session continues, never restarts).
local meta, buffer, ids, wal, config, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local high_water, tenant_bytes, pressure = KEYS[7], KEYS[8], KEYS[9]
local message_id, body, tokens = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl, window, subject = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local now, pending_ms, member, tenant = tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12], ARGV[13]

local cold = redis.call('EXISTS', meta) == 0
if cold and ARGV[17] ~= '1' then
  return {-1, tonumber(redis.call('HGET', high_water, member)) or 0}
end

-- Backpressure, before any write: fail fast (the client raises a retryable error) rather than
-- let a stalled drain fill Redis until noeviction refuses every write with a raw OOM.
if message_id ~= '' then
  if redis.call('EXISTS', pressure) == 1 then
    return redis.error_reply('BACKPRESSURE memory Redis memory is past its threshold')
  end
  local backlog_max = tonumber(ARGV[14])
  local backlog = redis.call('XLEN', wal)
  if backlog_max > 0 and backlog >= backlog_max then
    return redis.error_reply('BACKPRESSURE backlog ' .. backlog .. ' undrained entries (limit '
      .. backlog_max .. ')')
  end
  local budget = tonumber(ARGV[15])
  if budget > 0 then
    local held = tonumber(redis.call('HGET', tenant_bytes, tenant)) or 0
    local reserve = tonumber(ARGV[16])
    -- The last part of the shard's capacity (the reserve) is kept for tenants well within
    -- their own budget, so one heavy tenant cannot take all of it.
    if held + #body > budget or (backlog_max > 0 and backlog >= backlog_max * (1 - reserve)
        and held >= budget * (1 - reserve)) then
      return redis.error_reply('QUOTA tenant ' .. tenant .. ' holds ' .. held
        .. ' bytes not yet durable (budget ' .. budget .. ' on this shard)')
    end
  end
end

local function restore()
  -- ARGV[18..]: last_seq, subject_id, covers_through_seq, summary, summary tokens,
  -- unsummarized tokens, summary count, last summary ms, n config fields, n (field, value)
  -- pairs, then (buffer item, message_id) pairs, oldest first.
  -- Entries still in the WAL are newer than the store: the high water keeps seq above them.
  local last_seq = math.max(tonumber(ARGV[18]), tonumber(redis.call('HGET', high_water, member)) or 0)
  local total = 0
  local n_config = tonumber(ARGV[26])
  for i = 27, 26 + 2 * n_config, 2 do
    redis.call('HSETNX', config, ARGV[i], ARGV[i + 1])
  end
  for i = 27 + 2 * n_config, #ARGV, 2 do
    local item = ARGV[i]
    local first = string.find(item, ':', 1, true)
    local second = string.find(item, ':', first + 1, true)
    total = total + tonumber(string.sub(item, first + 1, second - 1))
    redis.call('RPUSH', buffer, item)
    redis.call('ZADD', ids, tonumber(string.sub(item, 1, first - 1)), ARGV[i + 1])
  end
  redis.call('HSET', meta, 'seq', last_seq, 'tok', total, 'utok', ARGV[23], 'cov', ARGV[20])
  if tonumber(ARGV[24]) > 0 then
    redis.call('HSET', meta, 'summary', ARGV[21], 'stok', ARGV[22], 'nsum', ARGV[24], 'sat', ARGV[25])
  end
  if ARGV[19] ~= '' then
    redis.call('HSET', meta, 'sub', ARGV[19])
  end
  for _, key in ipairs({meta, buffer, ids, config}) do
    redis.call('EXPIRE', key, ttl)
  end
end

if cold then
  restore()
end
if message_id == '' then
  return {0, 0, 0, 0, 0}
end

local seen = redis.call('ZSCORE', ids, message_id)
if seen then
  local known = redis.call('HMGET', meta, 'tok', 'utok')
  return {tonumber(seen), 1, tonumber(known[1]) or 0, tonumber(known[2]) or 0, 0}
end
-- A session belongs to one subject (erasure finds it by that). Checked before any write.
if subject ~= '' then
  local bound = redis.call('HGET', meta, 'sub')
  if bound and bound ~= subject then
    return redis.error_reply('SUBJECT subject_id differs from the one this session belongs to')
  end
end
local custom = redis.call('HMGET', config, 'trigger', 'max_messages', 'max_tokens')
local trigger = tonumber(custom[1]) or tonumber(ARGV[8])
local max_messages = tonumber(custom[2]) or tonumber(ARGV[4])
local max_tokens = tonumber(custom[3]) or tonumber(ARGV[9])

local seq = redis.call('HINCRBY', meta, 'seq', 1)
local buffered = redis.call('HINCRBY', meta, 'tok', tokens)
local unsummarized = redis.call('HINCRBY', meta, 'utok', tokens)
local length = redis.call('RPUSH', buffer, seq .. ':' .. tokens .. ':' .. body)
if length > max_messages or buffered > max_tokens then
  -- The oldest leave the buffer but stay unsummarized (utok keeps counting them) and durable
  -- (WAL, store): the next fold reads them from the store. The newest message always stays.
  while length > 1 and (length > max_messages or buffered > max_tokens) do
    local old = redis.call('LPOP', buffer)
    local first = string.find(old, ':', 1, true)
    local second = string.find(old, ':', first + 1, true)
    buffered = buffered - tonumber(string.sub(old, first + 1, second - 1))
    length = length - 1
  end
  redis.call('HSET', meta, 'tok', buffered)
end
-- A crossing: this append leaves the unsummarized total at or above the trigger while no
-- summary is pending. Exactly one per pending summary: the flag stays until the summarize
-- commit clears it (or it outlives pending_timeout_ms, when its task is presumed lost).
local crossed = 0
if unsummarized >= trigger then
  local until_ms = tonumber(redis.call('HGET', meta, 'pend'))
  if not until_ms or until_ms <= now then
    redis.call('HSET', meta, 'pend', now + pending_ms)
    redis.call('HINCRBY', meta, 'xc', 1)
    redis.call('ZADD', pending, now, member)
    crossed = 1
  end
end
if subject ~= '' then
  redis.call('HSET', meta, 'sub', subject)
end
redis.call('ZADD', ids, seq, message_id)
if redis.call('ZCARD', ids) > window then
  redis.call('ZREMRANGEBYRANK', ids, 0, -(window + 1))
end
-- Every entry names its kind and format version, so a worker that meets a newer one leaves
-- it for a newer worker (rolling upgrades). 'm' 1: a chat message.
if crossed == 1 then
  -- The drainer enqueues llm.summarize for this session once this entry is committed.
  redis.call('XADD', wal, '*', 'k', 'm', 'v', '1', 'q', seq, 'd', body, 'sum', '1')
else
  redis.call('XADD', wal, '*', 'k', 'm', 'v', '1', 'q', seq, 'd', body)
end
redis.call('HSET', high_water, member, seq)
redis.call('HINCRBY', tenant_bytes, tenant, #body)
redis.call('EXPIRE', meta, ttl)
redis.call('EXPIRE', buffer, ttl)
redis.call('EXPIRE', ids, ttl)
redis.call('EXPIRE', config, ttl)
return {seq, 0, buffered, unsummarized, crossed}
