-- Commit a summary: only the lease holder with the newest fencing token, only over the
-- summary it folded from, and only the folded prefix of the buffer is trimmed.
-- KEYS[1] meta, KEYS[2] buffer, KEYS[3] summary lease, KEYS[4] pending index,
-- KEYS[5] summary draft
-- ARGV: token, expected covers_through_seq, new covers_through_seq, folded tokens, summary,
--       summary tokens, now_ms, member
-- Returns {trimmed messages, buffered tokens, unsummarized tokens}.
local meta, buffer = KEYS[1], KEYS[2]
if redis.call('GET', KEYS[3]) ~= ARGV[1] or redis.call('HGET', meta, 'fence') ~= ARGV[1] then
  return redis.error_reply('FENCED the summary lease expired or passed to another holder')
end
local cov = tonumber(redis.call('HGET', meta, 'cov') or '0')
if cov ~= tonumber(ARGV[2]) then
  return redis.error_reply('STALE the session summary moved from ' .. ARGV[2] .. ' to ' .. cov)
end
local through = tonumber(ARGV[3])
if through <= cov or through > tonumber(redis.call('HGET', meta, 'seq') or '0') then
  return redis.error_reply('RANGE covers_through_seq ' .. through .. ' is outside the session')
end
-- Trim exactly the folded prefix: buffered items with seq <= through. Messages that arrived
-- while the LLM was answering have higher seqs and stay.
local buffered = tonumber(redis.call('HGET', meta, 'tok') or '0')
local trimmed = 0
while true do
  local head = redis.call('LINDEX', buffer, 0)
  if not head then
    break
  end
  local first = string.find(head, ':', 1, true)
  if tonumber(string.sub(head, 1, first - 1)) > through then
    break
  end
  local second = string.find(head, ':', first + 1, true)
  buffered = buffered - tonumber(string.sub(head, first + 1, second - 1))
  redis.call('LPOP', buffer)
  trimmed = trimmed + 1
end
local left = redis.call('HINCRBY', meta, 'utok', -tonumber(ARGV[4]))
if left < 0 then
  left = 0
  redis.call('HSET', meta, 'utok', 0)
end
redis.call('HSET', meta, 'tok', buffered, 'cov', through, 'summary', ARGV[5], 'stok', ARGV[6],
  'sat', ARGV[7])
redis.call('HINCRBY', meta, 'nsum', 1)
redis.call('HDEL', meta, 'pend')
redis.call('ZREM', KEYS[4], ARGV[8])
redis.call('DEL', KEYS[3], KEYS[5])
return {trimmed, buffered, left}
