-- Scroll-back: the buffer, the session's seq and its WAL high water, as one snapshot.
-- KEYS[1] meta hash, KEYS[2] buffer list, KEYS[3] the shard's high-water hash.
-- ARGV[1] the session's member "<tenant>/<session_id>". Reads only.
return {
  redis.call('LRANGE', KEYS[2], 0, -1),
  redis.call('HGET', KEYS[1], 'seq') or '',
  redis.call('HGET', KEYS[3], ARGV[1]) or '',
}
