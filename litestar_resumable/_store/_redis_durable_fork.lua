-- Count a fork of a durable stream in (ARGV[1] '1') or out ('-1'). A fork is counted in only if its source
-- exists and is not deleted. KEYS[1] the source's meta hash.
-- Returns {'ok', forks after, '1' if the source is marked deleted else ''}, or {'gone', '0', ''}.
local m = redis.call('HMGET', KEYS[1], 'format', 'deleted')
if m[1] ~= 'durable-streams' or (ARGV[1] == '1' and m[2] == '1') then
  return {'gone', '0', ''}
end
local forks = redis.call('HINCRBY', KEYS[1], 'forks', tonumber(ARGV[1]))
return {'ok', forks, m[2] or ''}
