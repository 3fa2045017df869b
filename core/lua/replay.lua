-- Move one dead-lettered WAL entry back into its shard's WAL, atomically (same {shard} slot).
-- KEYS[1] dead-letter stream, KEYS[2] WAL stream. ARGV[1] dead-letter entry id.
-- Returns 0 when there is no such dead letter (already replayed or dropped): idempotent.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
  return 0
end
local fields = found[1][2]
local seq, body, summarize
for i = 1, #fields, 2 do
  if fields[i] == 'q' then
    seq = fields[i + 1]
  elseif fields[i] == 'd' then
    body = fields[i + 1]
  elseif fields[i] == 'sum' then
    summarize = fields[i + 1]
  end
end
if not seq or not body then
  return redis.error_reply('dead letter ' .. ARGV[1] .. ' has no WAL entry to replay')
end
if summarize then
  -- The entry that crossed the summary trigger keeps its flag, or no summary would follow.
  redis.call('XADD', KEYS[2], '*', 'q', seq, 'd', body, 'sum', summarize)
else
  redis.call('XADD', KEYS[2], '*', 'q', seq, 'd', body)
end
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
