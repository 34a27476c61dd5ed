-- Delete a durable stream: its events, its meta hash and its name entry (if it still names this stream),
-- and tell subscribers, so that their readers look again and find it gone; or, while streams forked from
-- it exist, only mark it deleted (it keeps its name, so the name cannot be taken, until its last fork goes).
-- KEYS[1] events stream, KEYS[2] meta hash; ARGV[1] base, ARGV[2] stream id, ARGV[3] sharded, ARGV[4] '1'
-- to delete a stream marked deleted whose last fork went (its collection).
-- Returns {'deleted', id of the stream it forks or ''}, {'marked', ''}, or {'none', ''} if there was no
-- such durable stream (or it was marked already).
local m = redis.call('HMGET', KEYS[2], 'format', 'name', 'last', 'forks', 'deleted', 'fsrc')
if m[1] ~= 'durable-streams' or (m[5] == '1') ~= (ARGV[4] == '1') then
  return {'none', ''}
end
if tonumber(m[4] or '0') > 0 then
  redis.call('HSET', KEYS[2], 'deleted', '1')
  return {'marked', ''}
end
redis.call('DEL', KEYS[1], KEYS[2])
local entry = ARGV[1] .. ':name:' .. m[2]
if redis.call('GET', entry) == ARGV[2] then
  redis.call('DEL', entry)
end
notify(ARGV[1], ARGV[2], ARGV[3], string.format('%d', tonumber(m[3]) + 1))
notify(ARGV[1], ARGV[2], ARGV[3], string.format('%d', tonumber(m[3]) + 1), 'end')
return {'deleted', m[6] or ''}
