-- End a running stream with its terminal event, unless it has ended already (or, when asked, unless the
-- producer's lease still holds). Whoever calls it first wins; everyone gets the final state back.
-- KEYS[1] events stream, KEYS[2] meta hash
-- ARGV[1] base, ARGV[2] stream id, ARGV[3] status, ARGV[4] terminal data, ARGV[5] '1' to finish only if
-- the lease has expired, ARGV[6] sharded. The stream then expires after the ttl recorded at its creation.
local m = redis.call('HMGET', KEYS[2], 'status', 'lease')
if not m[1] then
  return false
end
if m[1] == 'running' and (ARGV[5] ~= '1' or tonumber(m[2]) <= now_ms()) then
  end_stream(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6])
end
return redis.call('HMGET', KEYS[2], 'status', 'last', 'route', 'key', 'owner', 'format', 'hold')
