-- After a batch is durable: clear the high water of sessions whose newest entry it held,
-- give the drained bytes back to their tenants' budgets, and drop durable memories from the
-- shard's index of memories not yet durable.
-- KEYS[1] high water hash (member -> newest seq not yet durable), KEYS[2] tenant bytes hash,
-- KEYS[3] memory ids not yet durable.
-- ARGV: n sessions, n tenants, then (member, highest seq in the batch) pairs, then (tenant,
-- bytes) pairs, then memory ids.
-- Compare-and-delete: an append newer than the batch keeps its member's high water.
local sessions, tenants = tonumber(ARGV[1]), tonumber(ARGV[2])
local first_tenant = 3 + 2 * sessions
local first_memory = first_tenant + 2 * tenants
for i = 3, first_tenant - 1, 2 do
  local seq = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if seq and seq <= tonumber(ARGV[i + 1]) then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
for i = first_tenant, first_memory - 1, 2 do
  -- Entries written before byte counting existed were never counted: never go below zero.
  if redis.call('HINCRBY', KEYS[2], ARGV[i], 0 - tonumber(ARGV[i + 1])) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
for i = first_memory, #ARGV do
  redis.call('HDEL', KEYS[3], ARGV[i])
end
return 1
