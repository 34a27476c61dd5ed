-- A counter of members, each counted until its expiry (shared limits: generations, followers).
-- KEYS[1] the counter (a sorted set: member -> expiry, Redis server time in ms)
-- ARGV[1] 'take', 'renew' or 'drop', ARGV[2] ttl (ms), ARGV[3] limit (take), then the members.
-- take: count ARGV[4] unless the counter is full (an expired member does not count); 1 if counted.
-- renew: push the expiry of the members still counted. drop: stop counting ARGV[4].
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expiry = now + tonumber(ARGV[2])
if ARGV[1] == 'take' then
  if not redis.call('ZSCORE', KEYS[1], ARGV[4]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
  end
  redis.call('ZADD', KEYS[1], expiry, ARGV[4])
elseif ARGV[1] == 'renew' then
  for i = 4, #ARGV do
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
  end
else
  redis.call('ZREM', KEYS[1], ARGV[4])
end
if redis.call('ZCARD', KEYS[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 1
