-- Read what a prompt needs in one call: the meta hash and the buffer, as one snapshot.
-- KEYS[1] meta hash, KEYS[2] buffer list. Returns false when the session is not in Redis.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
return {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
