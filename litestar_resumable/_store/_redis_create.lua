-- Create a running stream and, with a key, make it the key's stream in the same step: the key's running
-- stream is ended 'cancelled' (or, with on_conflict 'reject', nothing is done and its id returned), or
-- 'interrupted' if its producer's lease ran out.
-- KEYS[1] the new stream's meta, KEYS[2] the key's entry (only with a key)
-- ARGV[1] base, ARGV[2] stream id, ARGV[3] lease (ms), ARGV[4] ttl after the end (ms), ARGV[5] route,
-- ARGV[6] key ('' for none), ARGV[7] owner ('' for none, else '=' and the owner id), ARGV[8] format,
-- ARGV[9] on_conflict, ARGV[10] 'cancelled' terminal data, ARGV[11] 'interrupted' terminal data,
-- ARGV[12] '1' to notify with sharded Pub/Sub, ARGV[13] '1' if the caller writes it ('0': a writer claims it)
-- Returns {'exists', ''}, {'conflict', holder id} or {'created', cancelled stream id or ''}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', ''}
end
local now = now_ms()
local lease = tonumber(ARGV[3])
local expire = lease + tonumber(ARGV[4])
local replaced = ''
if ARGV[6] ~= '' then
  local holder = redis.call('GET', KEYS[2])
  if holder then
    local h = redis.call('HMGET', ARGV[1] .. ':' .. holder .. ':meta', 'status', 'lease')
    if h[1] == 'running' then
      if tonumber(h[2]) <= now then
        end_stream(ARGV[1], holder, 'interrupted', ARGV[11], ARGV[12])
      elseif ARGV[9] == 'reject' then
        return {'conflict', holder}
      else
        end_stream(ARGV[1], holder, 'cancelled', ARGV[10], ARGV[12])
        replaced = holder
      end
    end
  end
  redis.call('SET', KEYS[2], ARGV[2], 'PX', expire)
end
redis.call('HSET', KEYS[1], 'status', 'running', 'last', 0, 'lease', now + lease, 'ttl', ARGV[4],
  'route', ARGV[5], 'key', ARGV[6], 'owner', ARGV[7], 'format', ARGV[8], 'hold', ARGV[3], 'claimed', ARGV[13])
redis.call('PEXPIRE', KEYS[1], expire)
return {'created', replaced}
