-- Take over writing a stream created unclaimed: it must run, be unclaimed and have its lease still.
-- KEYS[1] events stream, KEYS[2] meta hash. Returns 1 if taken (the lease renewed), else 0.
local m = redis.call('HMGET', KEYS[2], 'status', 'claimed', 'lease', 'hold', 'ttl')
local now = now_ms()
if m[1] ~= 'running' or m[2] ~= '0' or tonumber(m[3]) <= now then
  return 0
end
local hold = tonumber(m[4])
redis.call('HSET', KEYS[2], 'claimed', '1', 'lease', now + hold)
local expire = hold + tonumber(m[5])
redis.call('PEXPIRE', KEYS[2], expire)
redis.call('PEXPIRE', KEYS[1], expire)
return 1
