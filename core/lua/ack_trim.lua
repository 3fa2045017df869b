-- Acknowledge a persisted batch, trim the WAL and settle what left it, atomically: a drainer
-- killed after its commit either acks and settles everything or nothing (then the batch is
-- replayed, inserts nothing twice, and settles then).
-- KEYS[1] WAL stream, KEYS[2] failing hash (entry id -> first failure); to settle, also
-- KEYS[3] high water (member -> newest seq not yet durable), KEYS[4] tenant bytes, KEYS[5]
-- memory ids not yet durable, KEYS[6] state high water (member -> newest state version).
-- ARGV[1] group, ARGV[2] n ids, the n ids to ack; then, to settle: n sessions, n tenants,
-- n memory ids, (member, highest seq in the batch) pairs, (tenant, bytes) pairs, memory ids,
-- then (member, highest state version in the batch) pairs.
-- Never trims by MAXLEN (before Redis 8.2 that silently drops un-acked entries). The MINID is
-- the oldest pending id, or with nothing pending the group's last-delivered id: everything
-- below either has been delivered and acked, so an entry a consumer still holds, or one not
-- yet delivered, is never removed.
local n = tonumber(ARGV[2])
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3, 2 + n))
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HDEL', KEYS[2], unpack(ARGV, 3, 2 + n))
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
local floor
if pending[1] > 0 then
  floor = pending[2]
else
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local fields = {}
    for i = 1, #group, 2 do
      fields[group[i]] = group[i + 1]
    end
    if fields['name'] == ARGV[1] then
      floor = fields['last-delivered-id']
    end
  end
end
local trimmed = 0
if floor then
  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', floor)
end

local s = 3 + n
if #ARGV >= s + 2 then
  local sessions, tenants = tonumber(ARGV[s]), tonumber(ARGV[s + 1])
  local memories = tonumber(ARGV[s + 2])
  local first_session = s + 3
  local first_tenant = first_session + 2 * sessions
  local first_memory = first_tenant + 2 * tenants
  local first_state = first_memory + memories
  -- Compare-and-delete: an append (or state patch) newer than the batch keeps its member's
  -- high water.
  local function settle(key, from, to)
    for i = from, to, 2 do
      local newest = tonumber(redis.call('HGET', key, ARGV[i]))
      if newest and newest <= tonumber(ARGV[i + 1]) then
        redis.call('HDEL', key, ARGV[i])
      end
    end
  end
  settle(KEYS[3], first_session, first_tenant - 1)
  for i = first_tenant, first_memory - 1, 2 do
    -- Entries written before byte counting existed were never counted: never go below zero.
    if redis.call('HINCRBY', KEYS[4], ARGV[i], 0 - tonumber(ARGV[i + 1])) <= 0 then
      redis.call('HDEL', KEYS[4], ARGV[i])
    end
  end
  for i = first_memory, first_state - 1 do
    redis.call('HDEL', KEYS[5], ARGV[i])
  end
  settle(KEYS[6], first_state, #ARGV)
end
return {acked, trimmed}
