-- Read up to ARGV[2] events after position ARGV[1], stopping before the event that would take the data
-- past ARGV[3] bytes (one event at least), so that a reader's memory is bounded in bytes whatever the
-- events' sizes. Reads in XRANGE steps sized by the events seen so far (the first step is one event), so
-- Redis holds little more than the answer either.
-- Returns {the stream's last position (-1 if it has no record), {entries}}.
-- KEYS[1] events stream, KEYS[2] meta hash
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '-1')
local out, used = {}, 0
local after, left, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local step = 1
while left > 0 and used < budget do
  local ask = math.min(left, step)
  local chunk = redis.call('XRANGE', KEYS[1], '(0-' .. after, '+', 'COUNT', ask)
  for _, entry in ipairs(chunk) do
    local size = #entry[2][2]  -- fields are 'd', data[, 'e', name]
    if used + size > budget and #out > 0 then
      return {last, out}
    end
    used = used + size
    out[#out + 1] = entry
    after = string.sub(entry[1], 3)
  end
  if #chunk < ask then
    return {last, out}
  end
  left = left - #chunk
  -- Grow the step while the events are small: as many as the rest of the budget holds at their average.
  step = math.max(1, math.min(256, math.floor((budget - used) * #out / math.max(used, 1))))
end
return {last, out}
