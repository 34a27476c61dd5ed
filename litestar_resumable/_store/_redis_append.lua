-- Append events to a running stream, renew the producer's lease and the expiry of the stream's keys (and
-- of its key's entry), and tell subscribers the new last position. Nothing is written unless the stream is
-- still running at the expected position. A batch that ends exactly at the last stored position is the
-- producer's retry of a write Redis ran but whose reply was lost: it is stored already, so it only
-- renews the lease (the producer is the only writer of ordinary events).
-- KEYS[1] events stream, KEYS[2] meta hash
-- ARGV[1] lease (ms), ARGV[2] base, ARGV[3] stream id, ARGV[4] sharded, ARGV[5] first position,
-- then (event name or '', data) pairs.
local meta = redis.call('HMGET', KEYS[2], 'status', 'last', 'ttl', 'key')
if meta[1] ~= 'running' then
  return meta[1] or ''
end
local last = tonumber(meta[2])
local count = (#ARGV - 5) / 2
if count > 0 then
  local first = tonumber(ARGV[5])
  if first + count - 1 == last then
    count = 0  -- a retried batch, stored already
  elseif first ~= last + 1 then
    return redis.error_reply('append at position ' .. ARGV[5] .. ', expected ' .. string.format('%d', last + 1))
  else
    for i = 0, count - 1 do
      local id = '0-' .. string.format('%d', first + i)
      local name = ARGV[6 + 2 * i]
      if name == '' then
        redis.call('XADD', KEYS[1], id, 'd', ARGV[7 + 2 * i])
      else
        redis.call('XADD', KEYS[1], id, 'd', ARGV[7 + 2 * i], 'e', name)
      end
    end
    last = first + count - 1
  end
end
local lease = tonumber(ARGV[1])
redis.call('HSET', KEYS[2], 'last', last, 'lease', now_ms() + lease)
local expire = lease + tonumber(meta[3])
redis.call('PEXPIRE', KEYS[2], expire)
redis.call('PEXPIRE', KEYS[1], expire)
if meta[4] ~= '' then
  redis.call('PEXPIRE', ARGV[2] .. ':key:' .. meta[4], expire)
end
if count > 0 then
  notify(ARGV[2], ARGV[3], ARGV[4], string.format('%d', last))
end
return 'running'
