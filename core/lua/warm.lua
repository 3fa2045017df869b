-- Re-warm a cold session from the durable store, unless an append re-created it meanwhile.
-- KEYS[1] meta, KEYS[2] buffer, KEYS[3] recent ids
-- ARGV: last_seq, ttl_s, subject_id ('' = none), then pairs of (buffer item, message_id).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local total = 0
for i = 4, #ARGV, 2 do
  local item = ARGV[i]
  local first = string.find(item, ':', 1, true)
  local second = string.find(item, ':', first + 1, true)
  local seq = tonumber(string.sub(item, 1, first - 1))
  total = total + tonumber(string.sub(item, first + 1, second - 1))
  redis.call('RPUSH', KEYS[2], item)
  redis.call('ZADD', KEYS[3], seq, ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'tok', total)
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'sub', ARGV[3])
end
for k = 1, 3 do
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
return 1
