-- Move one dead-lettered WAL entry back into its shard's WAL, atomically (same {shard} slot).
-- KEYS[1] dead-letter stream, KEYS[2] WAL stream. ARGV[1] dead-letter entry id, ARGV[2..] the
-- fields the dead letter added (deadletters.RECORD_FIELDS); every other field is the entry's
-- own, copied back byte for byte (kind, version, seq, record, the summarize flag).
-- Returns 0 when there is no such dead letter (already replayed or dropped): idempotent.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
  return 0
end
local added = {}
for i = 2, #ARGV do
  added[ARGV[i]] = true
end
local fields, own = found[1][2], {}
for i = 1, #fields, 2 do
  if not added[fields[i]] then
    own[#own + 1] = fields[i]
    own[#own + 1] = fields[i + 1]
  end
end
if #own == 0 then
  return redis.error_reply('dead letter ' .. ARGV[1] .. ' has no WAL entry to replay')
end
redis.call('XADD', KEYS[2], '*', unpack(own))
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
