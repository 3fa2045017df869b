-- Clear a session's history in Redis up to a floor: clear_session, clear_buffer,
-- clear_summaries, erasure (core/erasure/sessions.py). One call, the session's slot.
-- KEYS[1] meta  KEYS[2] buffer  KEYS[3] recent ids  KEYS[4] summary lease  KEYS[5] summary draft
-- KEYS[6] pending index  KEYS[7] high water  KEYS[8] state hash  KEYS[9..12] state kinds
-- KEYS[13] results  KEYS[14] unconsumed results  KEYS[15] consumed results
-- KEYS[16] state high water
-- ARGV: member, what ('m' messages, 's' summaries, 't' state and results, in any mix),
--   floor (0: the session's newest seq now), ttl_s.
-- Messages with seq <= floor leave the buffer (newer ones, appended after the floor was
-- fixed, stay); the session stays warm with its seq, so seq is never reused. Any summary in
-- flight is fenced off: its lease, fence and draft go, so summary_commit.lua refuses it.
-- Returns {floor, warm (0/1), state floor, results floor, buffer items removed}.
local meta, buffer, ids = KEYS[1], KEYS[2], KEYS[3]
local member, what, ttl = ARGV[1], ARGV[2], ARGV[4]
local messages = string.find(what, 'm', 1, true) ~= nil
local summaries = string.find(what, 's', 1, true) ~= nil
local state = string.find(what, 't', 1, true) ~= nil

local warm = redis.call('EXISTS', meta) == 1
local seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
local floor = tonumber(ARGV[3])
if floor == 0 then
  floor = math.max(seq, tonumber(redis.call('HGET', KEYS[7], member) or '0'))
end

local removed = 0
if messages then
  while true do
    local head = redis.call('LINDEX', buffer, 0)
    if not head then
      break
    end
    local first = string.find(head, ':', 1, true)
    if tonumber(string.sub(head, 1, first - 1)) > floor then
      break
    end
    redis.call('LPOP', buffer)
    removed = removed + 1
  end
  redis.call('ZREMRANGEBYSCORE', ids, '-inf', floor)
end

if messages or summaries then
  -- Whatever a summarizer is folding right now covers cleared messages or a cleared summary.
  redis.call('DEL', KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[6], member)
  if warm then
    redis.call('HDEL', meta, 'fence', 'pend')
  end
end

if warm then
  -- What is left in the buffer is all there is to count.
  local tokens = 0
  for _, item in ipairs(redis.call('LRANGE', buffer, 0, -1)) do
    local first = string.find(item, ':', 1, true)
    local second = string.find(item, ':', first + 1, true)
    tokens = tokens + tonumber(string.sub(item, first + 1, second - 1))
  end
  local cov = tonumber(redis.call('HGET', meta, 'cov') or '0')
  if summaries then
    redis.call('HDEL', meta, 'summary', 'stok', 'nsum', 'sat')
    cov = 0
  end
  if messages then
    -- Nothing at or below the floor is left to fold.
    cov = math.max(cov, floor)
  end
  redis.call('HSET', meta, 'seq', math.max(seq, floor), 'tok', tokens, 'utok', tokens, 'cov', cov)
  redis.call('EXPIRE', meta, ttl)
end

local state_floor, results_floor = 0, 0
if state then
  state_floor = math.max(tonumber(redis.call('HGET', KEYS[8], 'v') or '0'),
    tonumber(redis.call('HGET', KEYS[16], member) or '0'))
  results_floor = tonumber(redis.call('HGET', KEYS[13], '#') or '0')
  redis.call('DEL', KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15])
end
return {floor, warm and 1 or 0, state_floor, results_floor, removed}
