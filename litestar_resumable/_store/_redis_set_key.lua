-- Compare-and-set of a key's active stream id.
-- KEYS[1] key entry; ARGV[1] expected stream id ('' for none), ARGV[2] new one ('' to remove), ARGV[3] ttl (ms)
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
