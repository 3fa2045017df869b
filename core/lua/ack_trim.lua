-- Acknowledge a persisted batch and trim the WAL, atomically.
-- KEYS[1] WAL stream, KEYS[2] failing hash (entry id -> first failure). ARGV[1] group,
-- ARGV[2..] ids to ack.
-- Never trims by MAXLEN (before Redis 8.2 that silently drops un-acked entries). The MINID is
-- the oldest pending id, or with nothing pending the group's last-delivered id: everything
-- below either has been delivered and acked, so an entry a consumer still holds, or one not
-- yet delivered, is never removed.
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HDEL', KEYS[2], unpack(ARGV, 2))
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
return {acked, trimmed}
