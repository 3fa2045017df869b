-- Read one checkpoint of a thread: its record, its blobs and its pending writes, in one call.
-- KEYS as checkpoint_put.lua (1-6). ARGV: ns, checkpoint id ('' = the newest in ns).
-- Returns {floor, member or false, record or false, {blob or false, ...} in the record's
--   "bl" order, {write JSON, ...} in (task_id, idx) order}. Writes are returned for the
--   requested id even when its record is not in Redis (the store then has the record).
local index, records, blobs, writes, write_index, clock =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ns, cid = ARGV[1], ARGV[2]
local floor = redis.call('HGET', clock, 'floor') or '0'
if cid == '' then
  local newest = redis.call('ZREVRANGEBYLEX', index, '(' .. ns .. '\1', '[' .. ns .. '\0',
    'LIMIT', 0, 1)
  if #newest == 0 then
    return {floor, false, false, {}, {}}
  end
  cid = string.sub(newest[1], #ns + 2)
end
local member = ns .. '\0' .. cid
local record = redis.call('HGET', records, member)
local found = {}
if record then
  local fields = {}
  for i, pair in ipairs(cjson.decode(record).bl) do
    fields[i] = ns .. '\0' .. pair[1] .. '\0' .. pair[2]
  end
  if #fields > 0 then
    found = redis.call('HMGET', blobs, unpack(fields))
  end
end
local pending = {}
local names = redis.call('ZRANGEBYLEX', write_index, '[' .. member .. '\0',
  '(' .. member .. '\1')
if #names > 0 then
  pending = redis.call('HMGET', writes, unpack(names))
end
return {floor, member, record or false, found, pending}
