-- Append events to a running stream, renew the producer's lease and the keys' expiry, and tell
-- subscribers the new last position. One round trip per batch, and nothing is written unless the
-- stream is still running at the expected position. A batch that ends exactly at the last stored
-- position is the producer's retry of a write Redis ran but whose reply was lost: it is stored already,
-- so it only renews the lease (the producer is the only writer of ordinary events).
-- KEYS[1] events stream, KEYS[2] meta hash
-- ARGV[1] lease (ms), ARGV[2] notify channel, ARGV[3] first position, then (event name or '', data) pairs.
local meta = redis.call('HMGET', KEYS[2], 'status', 'last', 'ttl')
if meta[1] ~= 'running' then
  return meta[1] or ''
end
local last = tonumber(meta[2])
local count = (#ARGV - 3) / 2
if count > 0 then
  local first = tonumber(ARGV[3])
  if first + count - 1 == last then
    count = 0  -- a retried batch, stored already
  elseif first ~= last + 1 then
    return redis.error_reply('append at position ' .. ARGV[3] .. ', expected ' .. string.format('%d', last + 1))
  else
    for i = 0, count - 1 do
      local id = '0-' .. string.format('%d', first + i)
      local name = ARGV[4 + 2 * i]
      if name == '' then
        redis.call('XADD', KEYS[1], id, 'd', ARGV[5 + 2 * i])
      else
        redis.call('XADD', KEYS[1], id, 'd', ARGV[5 + 2 * i], 'e', name)
      end
    end
    last = first + count - 1
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('HSET', KEYS[2], 'last', last, 'lease', now + lease)
local expire = lease + tonumber(meta[3])
redis.call('PEXPIRE', KEYS[2], expire)
redis.call('PEXPIRE', KEYS[1], expire)
if count > 0 then
  redis.call('PUBLISH', ARGV[2], string.format('%d', last))
end
return 'running'
