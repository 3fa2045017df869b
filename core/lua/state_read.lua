-- Read a session's conversation state in one call, or confirm that a local copy is current.
-- KEYS[1] state hash  KEYS[2..5] the kinds' strings (tasks, evaluation, context, temp)
-- KEYS[6] state high water (shard hash)
-- ARGV: the local copy's version ('' = none), member, 5 TTLs (state, tasks, evaluation,
--   context, temp), then '' or '1' (restore) with the durable version, schema and
--   (field, json) pairs: re-warms what Redis lost, never over something newer.
-- Returns {-1} not in Redis (no restore given); {-3, version} the durable store is behind the
-- WAL; {1, version} the local copy is current; or {2, version, schema, subject, data, tasks,
-- evaluation, context, temp}: '' for a field never set, '?' for a kind that expired from
-- Redis (read it from the store, then call again with it as the restore).
local main, hw, member = KEYS[1], KEYS[6], ARGV[2]
local KINDS = {'tasks', 'evaluation', 'context', 'temp'}
local TTL = {tasks = ARGV[4], evaluation = ARGV[5], context = ARGV[6], temp = ARGV[7]}
local restoring = ARGV[8] == '1'
local durable = tonumber(ARGV[9] or '0')
local given = {}
for i = 11, #ARGV, 2 do
  given[ARGV[i]] = ARGV[i + 1]
end

if redis.call('EXISTS', main) == 0 then
  if not restoring then
    return {-1}
  end
  local pending = tonumber(redis.call('HGET', hw, member))
  if pending and pending > durable then
    return {-3, pending}
  end
  redis.call('HSET', main, 'v', durable, 'sc', ARGV[10])
  for _, field in ipairs({'subject', 'data'}) do
    if given[field] then
      redis.call('HSET', main, 'f:' .. field, given[field])
    end
  end
  for i, kind in ipairs(KINDS) do
    redis.call('DEL', KEYS[i + 1])
    if given[kind] then
      redis.call('SET', KEYS[i + 1], given[kind], 'EX', TTL[kind])
      redis.call('HSET', main, 'k:' .. kind, durable)
    end
  end
  redis.call('EXPIRE', main, ARGV[3])
end

local version = tonumber(redis.call('HGET', main, 'v'))
if ARGV[1] ~= '' and tonumber(ARGV[1]) == version then
  return {1, version}
end
local reply = {2, version, redis.call('HGET', main, 'sc') or '1',
  redis.call('HGET', main, 'f:subject') or '', redis.call('HGET', main, 'f:data') or ''}
for i, kind in ipairs(KINDS) do
  local value = redis.call('GET', KEYS[i + 1])
  if not value then
    local changed = tonumber(redis.call('HGET', main, 'k:' .. kind))
    if not changed then
      value = ''
    elseif restoring and durable >= changed then
      -- The store holds the version that last changed this kind: its copy is current.
      value = given[kind] or ''
      if value ~= '' then
        redis.call('SET', KEYS[i + 1], value, 'EX', TTL[kind])
      end
    elseif restoring then
      return {-3, changed}
    else
      value = '?'
    end
  end
  reply[#reply + 1] = value
end
return reply
