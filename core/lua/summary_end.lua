-- End a summarize without a commit, if we still hold the lease.
-- KEYS[1] meta, KEYS[2] summary lease, KEYS[3] pending index
-- ARGV: token, mode, pending-until ms (mode 'defer'), member
-- mode 'done':  nothing needed folding; the pending summary is settled.
-- mode 'keep':  the attempt failed; the pending flag stays for the task's retry.
-- mode 'defer': the tenant's budget is spent; the flag stays until ARGV[3], when the next
--               append past the trigger asks again.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'done' then
  redis.call('HDEL', KEYS[1], 'pend')
  redis.call('ZREM', KEYS[3], ARGV[4])
elseif ARGV[2] == 'defer' and redis.call('HEXISTS', KEYS[1], 'pend') == 1 then
  redis.call('HSET', KEYS[1], 'pend', ARGV[3])
end
redis.call('DEL', KEYS[2])
return 1
