-- End a running stream with its terminal event, unless it has ended already (or, when asked, unless the
-- producer's lease still holds). Whoever calls it first wins; everyone gets the final state back.
-- KEYS[1] events stream, KEYS[2] meta hash
-- ARGV[1] status, ARGV[2] terminal data, ARGV[3] notify channel, ARGV[4] '1' to finish only if the lease
-- has expired. The stream then expires after the ttl recorded at its creation.
local status = redis.call('HGET', KEYS[2], 'status')
if not status then
  return false
end
if status == 'running' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local lease = tonumber(redis.call('HGET', KEYS[2], 'lease'))
  if ARGV[4] ~= '1' or lease <= now then
    local position = string.format('%d', tonumber(redis.call('HGET', KEYS[2], 'last')) + 1)
    redis.call('XADD', KEYS[1], '0-' .. position, 'd', ARGV[2], 'e', 'end')
    redis.call('HSET', KEYS[2], 'status', ARGV[1], 'last', position)
    local ttl = redis.call('HGET', KEYS[2], 'ttl')
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
    redis.call('PUBLISH', ARGV[3], position)
  end
end
return redis.call('HMGET', KEYS[2], 'status', 'last', 'route', 'key', 'owner')
