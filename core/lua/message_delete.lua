-- Delete one message from its session in Redis (core/erasure/messages.py), after the store has
-- tombstoned it. One call, the session's slot.
-- KEYS[1] meta  KEYS[2] buffer  KEYS[3] recent ids  KEYS[4] summary lease  KEYS[5] summary draft
-- KEYS[6] pending index
-- ARGV: seq, message_id, member, summaries dropped (0/1), then when 1: the summary that is
--   left (covers_through_seq, text, tokens, count, created ms; cov 0 = none) and the tokens
--   that are unsummarized again (the dropped summaries folded them).
-- A summary that covered the message is dropped for the one before it; the messages it had
-- folded count as unsummarized again, so the next crossing folds them anew, without it.
-- Returns {1 when the buffer held the message, else 0}.
local meta, buffer = KEYS[1], KEYS[2]
local seq = tonumber(ARGV[1])
local found, tokens = 0, 0
for _, item in ipairs(redis.call('LRANGE', buffer, 0, -1)) do
  local first = string.find(item, ':', 1, true)
  if tonumber(string.sub(item, 1, first - 1)) == seq then
    local second = string.find(item, ':', first + 1, true)
    tokens = tonumber(string.sub(item, first + 1, second - 1))
    redis.call('LREM', buffer, 1, item)
    found = 1
    break
  end
end
redis.call('ZREM', KEYS[3], ARGV[2])
if redis.call('EXISTS', meta) == 0 then
  return {found}
end
local cov = tonumber(redis.call('HGET', meta, 'cov') or '0')
if found == 1 then
  redis.call('HINCRBY', meta, 'tok', -tokens)
  if seq > cov then
    redis.call('HINCRBY', meta, 'utok', -tokens)
  end
end
if ARGV[4] == '1' then
  -- Whatever a summarizer folds right now may hold the message: fence it off.
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[6], ARGV[3])
  redis.call('HDEL', meta, 'fence', 'pend')
  local left = tonumber(ARGV[5])
  if left > 0 then
    redis.call('HSET', meta, 'cov', left, 'summary', ARGV[6], 'stok', ARGV[7], 'nsum', ARGV[8],
      'sat', ARGV[9])
  else
    redis.call('HDEL', meta, 'summary', 'stok', 'nsum', 'sat')
    redis.call('HSET', meta, 'cov', 0)
  end
  redis.call('HINCRBY', meta, 'utok', tonumber(ARGV[10]))
end
return {found}
