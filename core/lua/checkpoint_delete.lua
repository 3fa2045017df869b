-- delete_thread: every checkpoint, blob and write of the thread leaves Redis, and a floor
-- (the tombstone) hides whatever the store still holds of it from every reader at once.
-- KEYS as checkpoint_put.lua. ARGV: tenant, thread, clock ttl_s.
-- Returns the floor in microseconds; a 'cd' WAL entry carries it to the store, where the
-- purge deletes the rows at or below it (core/retention).
local clock, wal = KEYS[6], KEYS[7]
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
floor = math.max(floor, tonumber(redis.call('HGET', clock, 'hw')) or 0,
  tonumber(redis.call('HGET', clock, 'floor')) or 0)
local stamp = string.format('%.0f', floor)
redis.call('HSET', clock, 'floor', stamp, 'hw', stamp)
redis.call('EXPIRE', clock, ARGV[3])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('SREM', KEYS[10], ARGV[2])
-- 'cd' 1: a thread deleted at w.
redis.call('XADD', wal, '*', 'k', 'cd', 'v', '1', 't', ARGV[1], 's', ARGV[2], 'w', stamp,
  'd', '')
return stamp
