-- Append one chat message. The whole request path: one EVALSHA, one slot.
-- KEYS[1] meta hash   (seq, tok = tokens in the buffer, sub = subject id)
-- KEYS[2] buffer list (recent window; items "seq:tokens:json")
-- KEYS[3] recent ids  (sorted set message_id -> seq; makes a retried append a no-op)
-- KEYS[4] WAL stream  (the shard's write-ahead log, drained into the durable store)
-- ARGV: message_id, json, tokens, buffer_max, ttl_s, dedupe_window, subject_id ('' = none)
-- Returns {seq, duplicate (0/1), buffered tokens}.
local meta, buffer, ids, wal = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local message_id, body, tokens = ARGV[1], ARGV[2], tonumber(ARGV[3])
local buffer_max, ttl, window, subject = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), ARGV[7]

local seen = redis.call('ZSCORE', ids, message_id)
if seen then
  return {tonumber(seen), 1, tonumber(redis.call('HGET', meta, 'tok') or '0')}
end
-- A session belongs to one subject (erasure finds it by that). Checked before any write.
if subject ~= '' then
  local bound = redis.call('HGET', meta, 'sub')
  if bound and bound ~= subject then
    return redis.error_reply('SUBJECT subject_id differs from the one this session belongs to')
  end
end

local seq = redis.call('HINCRBY', meta, 'seq', 1)
local total = redis.call('HINCRBY', meta, 'tok', tokens)
local length = redis.call('RPUSH', buffer, seq .. ':' .. tokens .. ':' .. body)
if length > buffer_max then
  -- The window slides: whatever falls out is still in the WAL and the durable store.
  for _, old in ipairs(redis.call('LPOP', buffer, length - buffer_max)) do
    local first = string.find(old, ':', 1, true)
    local second = string.find(old, ':', first + 1, true)
    total = total - tonumber(string.sub(old, first + 1, second - 1))
  end
  redis.call('HSET', meta, 'tok', total)
end
if subject ~= '' then
  redis.call('HSET', meta, 'sub', subject)
end
redis.call('ZADD', ids, seq, message_id)
if redis.call('ZCARD', ids) > window then
  redis.call('ZREMRANGEBYRANK', ids, 0, -(window + 1))
end
redis.call('XADD', wal, '*', 'q', seq, 'd', body)
redis.call('EXPIRE', meta, ttl)
redis.call('EXPIRE', buffer, ttl)
redis.call('EXPIRE', ids, ttl)
return {seq, 0, total}
