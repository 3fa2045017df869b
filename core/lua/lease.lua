-- Renew (ARGV[2] > 0) or release (ARGV[2] = 0) a lease, only if we still hold it.
-- KEYS[1] lease key, ARGV[1] our token, ARGV[2] new ttl in ms.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('DEL', KEYS[1])
