-- Create a durable stream under a name, with its first events and, if asked, closed; unless the name
-- names a stream already: then change nothing and return that stream.
-- KEYS[1] the name entry, KEYS[2] the new stream's meta, KEYS[3] its events
-- ARGV[1] base, ARGV[2] stream id, ARGV[3] name, ARGV[4] content type, ARGV[5] media type, ARGV[6] owner
-- ('' for none, else '=' and the owner id), ARGV[7] TTL in seconds ('' for none), ARGV[8] expiry in Unix
-- ms ('' for none), ARGV[9] '1' to close it, ARGV[10] the terminal event's data, ARGV[11] the id of the
-- stream it forks ('' for none), ARGV[12] the fork's spec, then (event name or '', data) pairs (a fork's
-- copied events first). Returns {'created' or 'exists', stream id, DURABLE_FIELDS...}.
local existing = redis.call('GET', KEYS[1])
if existing then
  local meta = ARGV[1] .. ':' .. existing .. ':meta'
  if redis.call('EXISTS', meta) == 1 then
    local out = {'exists', existing}
    for _, value in ipairs(durable_fields(meta)) do
      out[#out + 1] = value
    end
    return out
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('stream exists')
end
local count = add_events(KEYS[3], 1, 13)
local status, last = 'running', count
if ARGV[9] == '1' then
  last = count + 1
  redis.call('XADD', KEYS[3], '0-' .. last, 'd', ARGV[10], 'e', 'end')
  status = 'done'
end
-- No producer holds a lease on it (the lease never runs out) and it has no key.
redis.call('HSET', KEYS[2], 'status', status, 'last', last, 'lease', '9007199254740991', 'ttl', 0,
  'route', '-', 'key', '', 'owner', ARGV[6], 'format', 'durable-streams', 'hold', 0, 'claimed', '1',
  'name', ARGV[3], 'ctype', ARGV[4], 'mtype', ARGV[5], 'dttl', ARGV[7], 'dexp', ARGV[8], 'cby', '',
  'fsrc', ARGV[11], 'fspec', ARGV[12], 'forks', 0, 'deleted', '')
redis.call('SET', KEYS[1], ARGV[2])
durable_expire(ARGV[7], ARGV[8], KEYS)
return {'created', ARGV[2], status, last, ARGV[4], ARGV[6], ARGV[7], ARGV[8], '', ARGV[3], 'durable-streams',
  ARGV[12], ''}
