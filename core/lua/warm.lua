-- Re-warm a cold session from the durable store, unless an append re-created it meanwhile.
-- KEYS[1] meta, KEYS[2] buffer, KEYS[3] recent ids
-- ARGV: last_seq, ttl_s, subject_id ('' = none), covers_through_seq, summary, summary tokens,
--       unsummarized tokens, summary count, last summary ms, then pairs of
--       (buffer item, message_id) for the messages after the summary, oldest first.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local total = 0
for i = 10, #ARGV, 2 do
  local item = ARGV[i]
  local first = string.find(item, ':', 1, true)
  local second = string.find(item, ':', first + 1, true)
  local seq = tonumber(string.sub(item, 1, first - 1))
  total = total + tonumber(string.sub(item, first + 1, second - 1))
  redis.call('RPUSH', KEYS[2], item)
  redis.call('ZADD', KEYS[3], seq, ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'tok', total, 'utok', ARGV[7], 'cov', ARGV[4])
if tonumber(ARGV[8]) > 0 then
  redis.call('HSET', KEYS[1], 'summary', ARGV[5], 'stok', ARGV[6], 'nsum', ARGV[8], 'sat', ARGV[9])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'sub', ARGV[3])
end
for k = 1, 3 do
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
return 1
