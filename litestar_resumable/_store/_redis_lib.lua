-- Shared by every script of the Redis store (prepended to each one when it is registered).
-- A stream's keys are BASE:ID:events (a Redis Stream, entry id 0-<position>), BASE:ID:meta (a hash) and
-- BASE:ID:notify (a channel), where BASE is '<prefix>:{<tag>}' and the tag is the stream id's first four
-- characters. A key's entry is BASE:key:<key>; a keyed stream's tag is its key's, so a key's entry and
-- all of its streams share one Cluster slot and one script can touch them together. Every write publishes
-- the new last position on BASE:ID:notify, the terminal event on BASE:ID:end as well (a process that
-- writes a stream learns of its own writes from their replies and needs to hear only of its end).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Tell subscribers of the stream's CHANNEL ('notify' for every write, 'end' for its end) its last position.
local function notify(base, id, sharded, position, channel)
  channel = base .. ':' .. id .. ':' .. (channel or 'notify')
  if sharded == '1' then
    redis.call('SPUBLISH', channel, position)
  else
    redis.call('PUBLISH', channel, position)
  end
end

-- End the running stream ID with its terminal event (data DATA), keep it TTL more ms, release its key.
local function end_stream(base, id, status, data, sharded)
  local events, meta = base .. ':' .. id .. ':events', base .. ':' .. id .. ':meta'
  local m = redis.call('HMGET', meta, 'last', 'ttl', 'key')
  local position = string.format('%d', tonumber(m[1]) + 1)
  redis.call('XADD', events, '0-' .. position, 'd', data, 'e', 'end')
  redis.call('HSET', meta, 'status', status, 'last', position)
  redis.call('PEXPIRE', events, m[2])
  redis.call('PEXPIRE', meta, m[2])
  if m[3] ~= '' then
    local entry = base .. ':key:' .. m[3]
    if redis.call('GET', entry) == id then
      redis.call('DEL', entry)
    end
  end
  notify(base, id, sharded, position)
  notify(base, id, sharded, position, 'end')
end

