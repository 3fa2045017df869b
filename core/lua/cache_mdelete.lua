-- Delete many entries of a cache namespace and their index members together
-- (core/cache/plans.py). KEYS[1] the index; entry i: KEYS[2i] its value, KEYS[2i+1] its
-- stamp; ARGV[i] the key as given. Deleting the stamp is what tells other processes that
-- their local copies are gone. Missing keys are no error. Every key shares the hash tag
-- {cache}: one slot.
for i = 1, #ARGV do
  redis.call('DEL', KEYS[2 * i], KEYS[2 * i + 1])
  redis.call('ZREM', KEYS[1], ARGV[i])
end
return #ARGV
