-- Create a running stream's meta record, unless one exists.
-- KEYS[1] meta hash
-- ARGV[1] lease (ms), ARGV[2] ttl after the end (ms), ARGV[3] route, ARGV[4] key ('' for none),
-- ARGV[5] owner ('' for none, else '=' and the owner id)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'running', 'last', 0, 'lease', now + lease, 'ttl', ARGV[2],
  'route', ARGV[3], 'key', ARGV[4], 'owner', ARGV[5])
redis.call('PEXPIRE', KEYS[1], lease + tonumber(ARGV[2]))
return 1
