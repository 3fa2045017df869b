-- Retention purged a session's messages through seq ARGV[1] from the durable store: drop their
-- copies from the session's Redis buffer, so context() never shows what the store deleted.
-- KEYS[1] buffer list ("seq:tokens:json", oldest first), KEYS[2] meta hash (tok, utok, cov).
-- Returns the number of items dropped. Only the head can be old enough: the buffer is in seq
-- order, so the loop stops at the first newer item.
local buffer, meta = KEYS[1], KEYS[2]
local through = tonumber(ARGV[1])
local dropped, tokens, unsummarized = 0, 0, 0
local cov = tonumber(redis.call('HGET', meta, 'cov') or '0') or 0
while true do
  local head = redis.call('LINDEX', buffer, 0)
  if not head then break end
  local first = string.find(head, ':', 1, true)
  local second = string.find(head, ':', first + 1, true)
  local seq = tonumber(string.sub(head, 1, first - 1))
  if seq > through then break end
  local tok = tonumber(string.sub(head, first + 1, second - 1))
  redis.call('LPOP', buffer)
  dropped = dropped + 1
  tokens = tokens + tok
  -- Unsummarized tokens count toward the summary trigger; purged ones can no longer be folded.
  if seq > cov then unsummarized = unsummarized + tok end
end
if dropped > 0 and redis.call('EXISTS', meta) == 1 then
  redis.call('HINCRBY', meta, 'tok', -tokens)
  if unsummarized > 0 then redis.call('HINCRBY', meta, 'utok', -unsummarized) end
end
return dropped
