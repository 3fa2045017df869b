-- Consolidation's compare-and-set on a subject's memory view (core/memories/records.py).
-- KEYS[1] the view hash.
-- ARGV[1] the "^" value read before the durable store was read ("" when there was none)
-- ARGV[2] merged id, ARGV[3] its live value
-- ARGV[4], ARGV[5], ...: pairs of (source id, the live value we expect it to hold)
-- Returns 1 (done), 0 (the view is cold), -1 (a change arrived: "^" moved), -2 (a source's
-- value is not the one expected), -3 (a source is CRITICAL or pinned), -4 (merged id exists).
local view = KEYS[1]
if redis.call('HEXISTS', view, '~') == 0 then
  return 0
end
local newest = redis.call('HGET', view, '^') or ''
if newest ~= ARGV[1] then
  return -1
end
if redis.call('HEXISTS', view, ARGV[2]) == 1 then
  return -4
end
for i = 4, #ARGV, 2 do
  local value = redis.call('HGET', view, ARGV[i])
  if value ~= ARGV[i + 1] then
    return -2
  end
  -- Belt and braces: whatever the caller believes, a CRITICAL ("4?|") or pinned ("?1|")
  -- memory is never superseded.
  if string.sub(value, 1, 1) == '4' or string.sub(value, 2, 2) == '1' then
    return -3
  end
end
redis.call('HSET', view, ARGV[2], ARGV[3])
for i = 4, #ARGV, 2 do
  redis.call('HSET', view, ARGV[i], '>' .. ARGV[2] .. '|' .. ARGV[i + 1])
end
return 1
