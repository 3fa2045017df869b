-- One page of a cache namespace's index (core/cache/plans.py): the members in a ZRANGEBYLEX
-- range (every score is 0, so members sort as bytes), without those whose value has expired;
-- those are removed from the index on the way, so a namespace with a TTL does not keep
-- listing, or growing with, keys whose values are gone.
-- KEYS[1] the index; ARGV[1], ARGV[2] the lex range; ARGV[3] the page size; ARGV[4] the
-- namespace's value key prefix, to which a member's hex (of its bytes) is appended.
-- Reply: {members read, the last member read (nil when none), {live members}}.
-- The value keys share KEYS[1]'s hash tag {cache}, so they live in its slot.
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local live, gone = {}, {}
for _, member in ipairs(members) do
  local hex = member:gsub('.', function(c) return string.format('%02x', c:byte()) end)
  if redis.call('EXISTS', ARGV[4] .. hex) == 1 then
    live[#live + 1] = member
  else
    gone[#gone + 1] = member
  end
end
for _, member in ipairs(gone) do
  redis.call('ZREM', KEYS[1], member)
end
return {#members, members[#members] or false, live}
