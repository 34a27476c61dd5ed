-- Delete a durable stream: its events, its meta hash and its name entry (if it still names this stream);
-- tell subscribers, so that their readers look again and find it gone.
-- KEYS[1] events stream, KEYS[2] meta hash; ARGV[1] base, ARGV[2] stream id, ARGV[3] sharded.
-- Returns 1 if it was deleted, 0 if there was no such durable stream.
local m = redis.call('HMGET', KEYS[2], 'format', 'name', 'last')
if m[1] ~= 'durable-streams' then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
local entry = ARGV[1] .. ':name:' .. m[2]
if redis.call('GET', entry) == ARGV[2] then
  redis.call('DEL', entry)
end
notify(ARGV[1], ARGV[2], ARGV[3], string.format('%d', tonumber(m[3]) + 1))
notify(ARGV[1], ARGV[2], ARGV[3], string.format('%d', tonumber(m[3]) + 1), 'end')
return 1
