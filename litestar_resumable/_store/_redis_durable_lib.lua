-- Shared by the durable stream scripts (prepended after _redis_lib.lua). A durable stream's meta hash
-- holds, besides the fields every stream has: name, ctype (its content type), mtype (its media type, what
-- appends are compared with), dttl (its TTL in seconds, '' for none), dexp (its expiry, Unix ms, '' for
-- none), sseq (the last Stream-Seq, absent until one is given), cby (the producer claim that closed it, ''
-- for none), per idempotent producer 'p:' .. producer id = '<epoch>:<last seq>', and for forks: fsrc (the
-- source's id, '' for none), fspec (how the fork was asked for), forks (how many streams forked from this
-- one exist) and deleted ('1' once deleted while forks remain). Its name entry is BASE:name:<name>, in the
-- same slot as the stream (a stream's tag is its name's); a fork's source may be in another slot.

local DURABLE_FIELDS = {
  'status', 'last', 'ctype', 'owner', 'dttl', 'dexp', 'cby', 'name', 'format', 'fspec', 'deleted'
}

local function durable_fields(meta)
  return redis.call('HMGET', meta, unpack(DURABLE_FIELDS))
end

-- Renew a durable stream's TTL (a sliding window), or set its fixed expiry, on its keys.
local function durable_expire(dttl, dexp, keys)
  if dttl and dttl ~= '' then
    local ms = tonumber(dttl) * 1000
    for _, key in ipairs(keys) do
      redis.call('PEXPIRE', key, ms)
    end
  elseif dexp and dexp ~= '' then
    for _, key in ipairs(keys) do
      redis.call('PEXPIREAT', key, dexp)
    end
  end
end

-- a <= b, byte by byte (Lua's own comparison follows the server's locale).
local function bytes_le(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a <= #b
end

-- XADD the (event name or '', data) pairs of ARGV from index FROM on at positions FIRST, FIRST + 1, ...;
-- return how many.
local function add_events(events, first, from)
  local count = (#ARGV - from + 1) / 2
  for i = 0, count - 1 do
    local id = '0-' .. string.format('%d', first + i)
    local name = ARGV[from + 2 * i]
    if name == '' then
      redis.call('XADD', events, id, 'd', ARGV[from + 1 + 2 * i])
    else
      redis.call('XADD', events, id, 'd', ARGV[from + 1 + 2 * i], 'e', name)
    end
  end
  return count
end
