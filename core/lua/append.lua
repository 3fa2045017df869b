-- Append one chat message. The whole request path: one EVALSHA, one slot.
-- KEYS[1] meta hash     (seq; tok = tokens in the buffer; utok = tokens after the summary;
--                        cov = covers_through_seq; pend = pending-until ms; xc = crossings; sub)
-- KEYS[2] buffer list   (unsummarized recent messages, oldest first; items "seq:tokens:json")
-- KEYS[3] recent ids    (sorted set message_id -> seq; makes a retried append a no-op)
-- KEYS[4] WAL stream    (the shard's write-ahead log, drained into the durable store)
-- KEYS[5] session config (per-session overrides: trigger, max_messages, max_tokens)
-- KEYS[6] pending index (the shard's sessions with a summary pending: member -> ms)
-- ARGV: message_id, json, tokens, buffer_max_messages, ttl_s, dedupe_window, subject_id
--       ('' = none), summary_trigger_tokens, buffer_max_tokens, now_ms, pending_timeout_ms,
--       member ("tenant/session_id"). The numbers are the global defaults; KEYS[5] overrides.
-- Returns {seq, duplicate (0/1), buffered tokens, unsummarized tokens, crossed (0/1)}.
local meta, buffer, ids, wal, config, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local message_id, body, tokens = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl, window, subject = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local now, pending_ms, member = tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12]

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
if crossed == 1 then
  -- The drainer enqueues llm.summarize for this session once this entry is committed.
  redis.call('XADD', wal, '*', 'q', seq, 'd', body, 'sum', '1')
else
  redis.call('XADD', wal, '*', 'q', seq, 'd', body)
end
redis.call('EXPIRE', meta, ttl)
redis.call('EXPIRE', buffer, ttl)
redis.call('EXPIRE', ids, ttl)
redis.call('EXPIRE', config, ttl)
return {seq, 0, buffered, unsummarized, crossed}
