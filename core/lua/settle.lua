-- After a batch is durable: clear the high water of sessions whose newest entry it held, and
-- give the drained bytes back to their tenants' budgets.
-- KEYS[1] high water hash (member -> newest seq not yet durable), KEYS[2] tenant bytes hash.
-- ARGV: n sessions, then (member, highest seq in the batch) pairs, then (tenant, bytes) pairs.
-- Compare-and-delete: an append newer than the batch keeps its member's high water.
local sessions = tonumber(ARGV[1])
for i = 2, 1 + 2 * sessions, 2 do
  local seq = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if seq and seq <= tonumber(ARGV[i + 1]) then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
for i = 2 + 2 * sessions, #ARGV, 2 do
  -- Entries written before byte counting existed were never counted: never go below zero.
  if redis.call('HINCRBY', KEYS[2], ARGV[i], -tonumber(ARGV[i + 1])) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return 1
