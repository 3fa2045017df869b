-- Append messages to one session: the whole request path, one EVALSHA, one slot.
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
-- KEYS[10] the subject's sessions of this shard (a set; erasure's index), or an unused key
-- KEYS[11] the tenant's sessions of this shard (a set; erase_tenant's index)
-- Both are written only when a session starts, is restored, or binds its subject: never on
-- a warm append.
-- ARGV[1..15]: n messages (0 = restore only), buffer_max_messages, ttl_s, dedupe_window,
--   subject_id ('' = none), summary_trigger_tokens, buffer_max_tokens, now_ms,
--   pending_timeout_ms, member ("tenant/session_id"), tenant, max_wal_backlog (0 = none),
--   tenant_budget_bytes (0 = none), tenant_reserve_ratio, restore ('' or '1');
--   then n triples (message_id, json, tokens); then, with restore, the session as the durable
--   store knows it (see restore() below). The numbers are the global defaults; KEYS[5]
--   overrides them.
-- All or nothing: every check runs before the first write.
-- Returns {crossed (index of the message that crossed the trigger, 0 = none), then per
-- message seq, duplicate (0/1)}, or {-1, high water} when the session is not in Redis and no
-- restore was given: the caller reads the durable store and calls again with it (a forgotten
-- session continues, never restarts).
local meta, buffer, ids, wal, config, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local high_water, tenant_bytes, pressure = KEYS[7], KEYS[8], KEYS[9]
local subject_sessions, tenant_sessions = KEYS[10], KEYS[11]
local n = tonumber(ARGV[1])
local ttl, window, subject = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local now, pending_ms, member, tenant = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10], ARGV[11]
local first_restore = 16 + 3 * n
local session_id = string.sub(member, #tenant + 2)

local cold = redis.call('EXISTS', meta) == 0
if cold and ARGV[15] ~= '1' then
  return {-1, tonumber(redis.call('HGET', high_water, member)) or 0}
end

-- Backpressure, before any write: fail fast (the client raises a retryable error) rather than
-- let a stalled drain fill Redis until noeviction refuses every write with a raw OOM.
if n > 0 then
  local size = 0
  for i = 17, 15 + 3 * n, 3 do
    size = size + #ARGV[i]
  end
  if redis.call('EXISTS', pressure) == 1 then
    return redis.error_reply('BACKPRESSURE memory Redis memory is past its threshold')
  end
  local backlog_max = tonumber(ARGV[12])
  local backlog = redis.call('XLEN', wal)
  if backlog_max > 0 and backlog + n > backlog_max then
    return redis.error_reply('BACKPRESSURE backlog ' .. backlog .. ' undrained entries (limit '
      .. backlog_max .. ')')
  end
  local budget = tonumber(ARGV[13])
  if budget > 0 then
    local held = tonumber(redis.call('HGET', tenant_bytes, tenant)) or 0
    local reserve = tonumber(ARGV[14])
    -- The last part of the shard's capacity (the reserve) is kept for tenants well within
    -- their own budget, so one heavy tenant cannot take all of it.
    if held + size > budget or (backlog_max > 0 and backlog >= backlog_max * (1 - reserve)
        and held >= budget * (1 - reserve)) then
      return redis.error_reply('QUOTA tenant ' .. tenant .. ' holds ' .. held
        .. ' bytes not yet durable (budget ' .. budget .. ' on this shard)')
    end
  end
end

local function restore()
  local r = first_restore
  -- ARGV[first_restore..]: last_seq, subject_id, covers_through_seq, summary, summary tokens,
  -- unsummarized tokens, summary count, last summary ms, n config fields, n (field, value)
  -- pairs, then (buffer item, message_id) pairs, oldest first.
  -- Entries still in the WAL are newer than the store: the high water keeps seq above them.
  local last_seq = math.max(tonumber(ARGV[r]), tonumber(redis.call('HGET', high_water, member)) or 0)
  local total = 0
  local n_config = tonumber(ARGV[r + 8])
  for i = r + 9, r + 8 + 2 * n_config, 2 do
    redis.call('HSETNX', config, ARGV[i], ARGV[i + 1])
  end
  for i = r + 9 + 2 * n_config, #ARGV, 2 do
    local item = ARGV[i]
    local first = string.find(item, ':', 1, true)
    local second = string.find(item, ':', first + 1, true)
    total = total + tonumber(string.sub(item, first + 1, second - 1))
    redis.call('RPUSH', buffer, item)
    redis.call('ZADD', ids, tonumber(string.sub(item, 1, first - 1)), ARGV[i + 1])
  end
  redis.call('HSET', meta, 'seq', last_seq, 'tok', total, 'utok', ARGV[r + 5], 'cov', ARGV[r + 2])
  if tonumber(ARGV[r + 6]) > 0 then
    redis.call('HSET', meta, 'summary', ARGV[r + 3], 'stok', ARGV[r + 4], 'nsum', ARGV[r + 6], 'sat', ARGV[r + 7])
  end
  if ARGV[r + 1] ~= '' then
    redis.call('HSET', meta, 'sub', ARGV[r + 1])
    redis.call('SADD', subject_sessions, session_id)
  end
  redis.call('SADD', tenant_sessions, session_id)
  for _, key in ipairs({meta, buffer, ids, config}) do
    redis.call('EXPIRE', key, ttl)
  end
end

if cold then
  restore()
end
if n == 0 then
  return {0}
end

-- The session's state, read once; every change is written back in one HSET at the end.
local state = redis.call('HMGET', meta, 'seq', 'tok', 'utok', 'pend', 'sub', 'exp')
local seq = tonumber(state[1]) or 0
local buffered, unsummarized = tonumber(state[2]) or 0, tonumber(state[3]) or 0
local until_ms, bound, refreshed = tonumber(state[4]), state[5], tonumber(state[6])
-- A session belongs to one subject (erasure finds it by that). Checked before any write.
if subject ~= '' and bound and bound ~= subject then
  return redis.error_reply('SUBJECT subject_id differs from the one this session belongs to')
end
local custom = redis.call('HMGET', config, 'trigger', 'max_messages', 'max_tokens')
local trigger = tonumber(custom[1]) or tonumber(ARGV[6])
local max_messages = tonumber(custom[2]) or tonumber(ARGV[2])
local max_tokens = tonumber(custom[3]) or tonumber(ARGV[7])

local reply = {0}
local items, new_ids, batch_ids = {}, {}, {}
local bytes = 0
for i = 16, 15 + 3 * n, 3 do
  local message_id, body, tokens = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local seen = batch_ids[message_id] or tonumber(redis.call('ZSCORE', ids, message_id))
  if seen then
    reply[#reply + 1] = seen
    reply[#reply + 1] = 1
  else
    seq = seq + 1
    buffered = buffered + tokens
    unsummarized = unsummarized + tokens
    batch_ids[message_id] = seq
    items[#items + 1] = seq .. ':' .. tokens .. ':' .. body
    new_ids[#new_ids + 1] = seq
    new_ids[#new_ids + 1] = message_id
    -- A crossing: this message leaves the unsummarized total at or above the trigger while no
    -- summary is pending. Exactly one per pending summary: the flag stays until the summarize
    -- commit clears it (or it outlives pending_timeout_ms, when its task is presumed lost).
    local crossed = reply[1] == 0 and unsummarized >= trigger and (not until_ms or until_ms <= now)
    -- Every entry names its kind and format version, so a worker that meets a newer one
    -- leaves it for a newer worker (rolling upgrades). 'm' 1: a chat message.
    if crossed then
      until_ms = now + pending_ms
      redis.call('HINCRBY', meta, 'xc', 1)
      redis.call('ZADD', pending, now, member)
      reply[1] = (i - 13) / 3
      -- The drainer enqueues llm.summarize for this session once this entry is committed.
      redis.call('XADD', wal, '*', 'k', 'm', 'v', '1', 'q', seq, 'd', body, 'sum', '1')
    else
      redis.call('XADD', wal, '*', 'k', 'm', 'v', '1', 'q', seq, 'd', body)
    end
    bytes = bytes + #body
    reply[#reply + 1] = seq
    reply[#reply + 1] = 0
  end
end
if #items == 0 then
  return reply
end
local length = redis.call('RPUSH', buffer, unpack(items))
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
end
redis.call('ZADD', ids, unpack(new_ids))
if #items > 1 or seq % 16 == 0 then
  -- The dedupe window: trimmed every 16th append, so it holds window..window+15 ids.
  redis.call('ZREMRANGEBYRANK', ids, 0, -(window + 1))
end
-- TTLs are refreshed at most every min(ttl / 100, 60 s), not on every append: a session
-- expires between ttl and ttl + that much after its last append.
local ttl_ms = tonumber(ttl) * 1000
local due = not refreshed or now - refreshed >= math.min(ttl_ms / 100, 60000)
if due then
  refreshed = now
end
redis.call('HSET', meta, 'seq', seq, 'tok', buffered, 'utok', unsummarized, 'exp', refreshed)
if until_ms and reply[1] > 0 then
  redis.call('HSET', meta, 'pend', until_ms)
end
if subject ~= '' and not bound then
  redis.call('HSET', meta, 'sub', subject)
  redis.call('SADD', subject_sessions, session_id)
end
redis.call('HSET', high_water, member, seq)
redis.call('HINCRBY', tenant_bytes, tenant, bytes)
if due then
  for _, key in ipairs({meta, buffer, ids, config}) do
    redis.call('EXPIRE', key, ttl)
  end
elseif length == #items then
  redis.call('EXPIRE', buffer, ttl)  -- the buffer was empty (a summary folded all of it)
end
return reply
