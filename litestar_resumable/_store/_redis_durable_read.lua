-- A durable stream's fields and up to ARGV[2] events after position ARGV[1] within ARGV[3] bytes (one
-- event at least), as _redis_read.lua reads them; with ARGV[4] '1', a read that renews the stream's TTL.
-- KEYS[1] events stream, KEYS[2] meta hash; ARGV[5] base. Returns false for no durable stream, else
-- {DURABLE_FIELDS..., {entries}}.
local fields = durable_fields(KEYS[2])
if fields[9] ~= 'durable-streams' then
  return false
end
if ARGV[4] == '1' then
  durable_expire(fields[5], '', {KEYS[1], KEYS[2], ARGV[5] .. ':name:' .. fields[8]})
end
local out, used = {}, 0
local after, left, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local step = 1
while left > 0 and used < budget do
  local ask = math.min(left, step)
  local chunk = redis.call('XRANGE', KEYS[1], '(0-' .. after, '+', 'COUNT', ask)
  local full = false
  for _, entry in ipairs(chunk) do
    local size = #entry[2][2]
    if used + size > budget and #out > 0 then
      full = true
      break
    end
    used = used + size
    out[#out + 1] = entry
    after = string.sub(entry[1], 3)
  end
  if full or #chunk < ask then
    break
  end
  left = left - #chunk
  step = math.max(1, math.min(256, math.floor((budget - used) * #out / math.max(used, 1))))
end
fields[#fields + 1] = out
return fields
