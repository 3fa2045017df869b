-- Write many entries of a cache namespace and its index together (core/cache/plans.py): a
-- crash or a concurrent walk never sees a key listed without its value, or the reverse.
-- KEYS[1] the namespace's index (zset, every score 0), KEYS[2] the tenant's set of namespaces
-- (erase_tenant finds them there); entry i: KEYS[2i+1] its value, KEYS[2i+2] its stamp.
-- ARGV[1] the TTL in ms (0: no expiry), ARGV[2] the namespace; entry i: ARGV[3i] the key as
-- given (the index member), ARGV[3i+1] its JSON, ARGV[3i+2] its new stamp.
-- The index lives as long as its longest-lived entry: persistent once it holds one without
-- expiry, else extended to the newest TTL (members whose value expired are dropped by
-- cache_index_page.lua as a walk meets them). Every key shares the hash tag {cache}: one slot.
local ttl = tonumber(ARGV[1])
local index_ttl = redis.call('PTTL', KEYS[1]) -- -2 missing, -1 persistent
local n = (#KEYS - 2) / 2
for i = 1, n do
  if ttl > 0 then
    redis.call('SET', KEYS[2 * i + 1], ARGV[3 * i + 1], 'PX', ttl)
    redis.call('SET', KEYS[2 * i + 2], ARGV[3 * i + 2], 'PX', ttl)
  else
    redis.call('SET', KEYS[2 * i + 1], ARGV[3 * i + 1])
    redis.call('SET', KEYS[2 * i + 2], ARGV[3 * i + 2])
  end
  redis.call('ZADD', KEYS[1], 0, ARGV[3 * i])
end
redis.call('SADD', KEYS[2], ARGV[2])
if ttl == 0 then
  redis.call('PERSIST', KEYS[1])
elseif index_ttl == -2 or (index_ttl >= 0 and index_ttl < ttl) then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return n
