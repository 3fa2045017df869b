-- Take up to n unconsumed agent results of a session, oldest first, marking them consumed in
-- the same call: two takers never get the same result.
-- KEYS as results_put.lua (results hash, unconsumed list, consumed ids newest first, WAL,
-- tenant bytes).
-- ARGV: n, tenant, session_id, now_ms, ttl_s, retention (consumed results kept), then '' or
--   '1' (restore) and the restore of results_put.lua.
-- Returns {-1} when the results are not in Redis and no restore was given, else {0, then
-- (id, value) pairs}.
local results, unconsumed, consumed, wal = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local function restore(at)
  if ARGV[at] ~= '1' then
    return false
  end
  redis.call('DEL', results, unconsumed, consumed)
  redis.call('HSET', results, '~', '1', '#', ARGV[at + 1])
  local waiting, done = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
  local i = at + 4
  for k = 1, waiting + done do
    redis.call('HSET', results, ARGV[i], ARGV[i + 1])
    if k <= waiting then
      redis.call('RPUSH', unconsumed, ARGV[i])
    else
      redis.call('HSET', results, 'c:' .. ARGV[i], ARGV[i + 2])
      redis.call('RPUSH', consumed, ARGV[i])
    end
    i = i + 3
  end
  return true
end

if redis.call('HEXISTS', results, '~') == 0 and not restore(7) then
  return {-1}
end
local ids = redis.call('LPOP', unconsumed, tonumber(ARGV[1]))
if not ids then
  return {0}
end
local reply, quoted = {0}, {}
for _, id in ipairs(ids) do
  redis.call('HSET', results, 'c:' .. id, ARGV[4])
  redis.call('LPUSH', consumed, id)
  reply[#reply + 1] = id
  reply[#reply + 1] = redis.call('HGET', results, id)
  quoted[#quoted + 1] = '"' .. id .. '"'
end
-- The newest `keep` consumed results keep their records; the ids of older ones stay in the
-- list (up to 10x as many, at least 1,000) so a repeated put of such an id is still known.
local keep = tonumber(ARGV[6])
for _, old in ipairs(redis.call('LRANGE', consumed, keep, keep + #ids - 1)) do
  redis.call('HDEL', results, old, 'c:' .. old)
end
redis.call('LTRIM', consumed, 0, keep + math.max(1000, 10 * keep) - 1)
local taken = '[' .. table.concat(quoted, ',') .. ']'
-- 'ac' 1: results consumed at ms (d = their ids).
redis.call('XADD', wal, '*', 'k', 'ac', 'v', '1', 't', ARGV[2], 's', ARGV[3], 'ms', ARGV[4],
  'd', taken)
redis.call('HINCRBY', KEYS[5], ARGV[2], #taken)
for _, key in ipairs({results, unconsumed, consumed}) do
  redis.call('EXPIRE', key, ARGV[5])
end
return reply
