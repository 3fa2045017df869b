-- Read many entries of a cache namespace in one call (core/cache/plans.py).
-- Entry i: KEYS[2i-1] its value, KEYS[2i] its stamp; ARGV[i] the stamp of the caller's local
-- copy ('' for none). Reply per entry: 0 missing; 1 the local copy is current (its value is
-- not sent again); else {value, stamp, pttl}. One script, so a value and its stamp are read
-- together (a set between them would pair a new stamp with an old value).
-- Every key shares the hash tag {cache}: one slot.
local out = {}
for i = 1, #ARGV do
  local stamp = redis.call('GET', KEYS[2 * i])
  if not stamp then
    out[i] = 0
  elseif stamp == ARGV[i] then
    out[i] = 1
  else
    local value = redis.call('GET', KEYS[2 * i - 1])
    if value then
      out[i] = {value, stamp, redis.call('PTTL', KEYS[2 * i - 1])}
    else
      out[i] = 0
    end
  end
end
return out
