-- Drop every cached value indexed under one tag, its stamp, and the tag index, atomically:
-- a set that adds a key to the tag either lands before (and is dropped) or after (and stays).
-- Returns the names it dropped. KEYS[1] the tag index set; ARGV[1] the value key prefix; ARGV[2] the stamp key prefix.
-- The value and stamp keys share KEYS[1]'s hash tag {cache}, so they live in its slot.
local members = redis.call('SMEMBERS', KEYS[1])
for _, name in ipairs(members) do
  redis.call('DEL', ARGV[1] .. name, ARGV[2] .. name)
end
redis.call('DEL', KEYS[1])
return members
