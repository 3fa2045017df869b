-- Forget a memory, or change its priority / pin, in a subject's view and the WAL (one slot).
-- KEYS[1] the view, KEYS[2] WAL stream, KEYS[3] accessed, KEYS[4] embeddings.
-- ARGV: op ('forget' | 'set'), memory_id, new prefix ("<priority><pinned>", for set),
--   tenant, subject_id, decay_s (for set), view ttl_s, restore ('' or '1'), then with
--   restore the view as the durable store knows it: (memory_id, value) pairs.
-- Returns {1} done, {0} no such live memory (nothing written), {-1} the view is cold.
--
-- Forgetting removes the memory's content everywhere: the memories it was merged into
-- (which hold its content) and, for a merged memory, the sources it folded. The other
-- sources of a merged memory that goes come back as they were (as unconsolidate would).
local view, wal = KEYS[1], KEYS[2]
local op, id = ARGV[1], ARGV[2]

if redis.call('HEXISTS', view, '~') == 0 then
  if ARGV[8] ~= '1' then
    return {-1}
  end
  for i = 9, #ARGV, 2 do
    redis.call('HSETNX', view, ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', view, '~', '1')
end
local value = redis.call('HGET', view, id)
if not value or value == '-' or id == '~' or id == '^' then
  return {0}
end

local entry
if op == 'set' then
  if string.sub(value, 1, 1) == '>' then
    return {0}  -- superseded: consolidation folded it; change the merged memory instead
  end
  if string.sub(value, 1, 2) == ARGV[3] then
    return {1}
  end
  redis.call('HSET', view, id, ARGV[3] .. string.sub(value, 3))
  entry = redis.call('XADD', wal, '*', 'k', 'u', 'v', '1', 'o', 'set', 'i', id, 'p', ARGV[3],
    'e', ARGV[6], 't', ARGV[4], 's', ARGV[5])
else
  -- parent[f] = the memory f was merged into.
  local flat = redis.call('HGETALL', view)
  local parent, stored = {}, {}
  for i = 1, #flat, 2 do
    local field, v = flat[i], flat[i + 1]
    stored[field] = v
    if string.sub(v, 1, 1) == '>' then
      parent[field] = string.sub(v, 2, string.find(v, '|', 1, true) - 1)
    end
  end
  local up = {}  -- the memories above id, which hold its content
  local doomed = {[id] = true}
  local cursor = parent[id]
  while cursor and not doomed[cursor] do
    up[cursor] = true
    doomed[cursor] = true
    cursor = parent[cursor]
  end
  -- Everything below id (what it folded, at any depth) goes with it.
  for field, _ in pairs(parent) do
    local walk, seen = field, 0
    while walk and seen < 64 do
      if walk == id then
        doomed[field] = true
        break
      end
      walk, seen = parent[walk], seen + 1
    end
  end
  for field, above in pairs(parent) do
    if up[above] and not doomed[field] then
      -- A sibling source of a merged memory that goes: back to the value it had.
      local v = stored[field]
      redis.call('HSET', view, field, string.sub(v, string.find(v, '|', 1, true) + 1))
    end
  end
  for field, _ in pairs(doomed) do
    redis.call('HSET', view, field, '-')
    redis.call('HDEL', KEYS[3], field)
    redis.call('HDEL', KEYS[4], field)
  end
  entry = redis.call('XADD', wal, '*', 'k', 'u', 'v', '1', 'o', 'forget', 'i', id,
    't', ARGV[4], 's', ARGV[5])
end
redis.call('HSET', view, '^', entry)
for _, key in ipairs({view, KEYS[3], KEYS[4]}) do
  redis.call('EXPIRE', key, ARGV[7])
end
return {1}
