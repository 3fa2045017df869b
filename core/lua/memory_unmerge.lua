-- Undo a merge in a subject's memory view: after a failed COMMIT (the merged memory never
-- existed) or for unconsolidate (it existed and is now gone).
-- KEYS[1] the view hash.
-- ARGV[1] merged id; ARGV[2] "live": refuse unless the merged memory is live (or absent),
-- "" to skip that check;
-- ARGV[3] what the merged field becomes: "" deletes it, anything else is written ("-").
-- ARGV[4], ARGV[5], ...: pairs of (source id, its live value from the durable store).
-- A source still marked ">merged|<old>" gets <old> back exactly; a missing one gets the
-- stored value; anything else (forgotten since) is left alone.
-- Returns 1 (done), 0 (cold view: nothing to undo), -1 (the merged memory is not live as
-- expected: forgotten or merged again since).
local view = KEYS[1]
if redis.call('HEXISTS', view, '~') == 0 then
  return 0
end
local merged = ARGV[1]
if ARGV[2] == 'live' then
  local current = redis.call('HGET', view, merged)
  if current and not string.match(current, '^%d%d|') then
    return -1
  end
end
if ARGV[3] == '' then
  redis.call('HDEL', view, merged)
else
  redis.call('HSET', view, merged, ARGV[3])
end
local mark = '>' .. merged .. '|'
for i = 4, #ARGV, 2 do
  local value = redis.call('HGET', view, ARGV[i])
  if not value then
    redis.call('HSET', view, ARGV[i], ARGV[i + 1])
  elseif string.sub(value, 1, #mark) == mark then
    redis.call('HSET', view, ARGV[i], string.sub(value, #mark + 1))
  end
end
return 1
