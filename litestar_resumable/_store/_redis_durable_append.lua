-- Append to a durable stream and, if asked, close it, in one step that first checks, in this order: the
-- stream exists (and is not deleted, kept for its forks); it is open (a close without data of a closed stream succeeds, and so does the retry of
-- the producer's append that closed it); with data, its media type; the producer's epoch and sequence
-- number; the Stream-Seq. Renews a TTL; tells subscribers the new last position.
-- KEYS[1] events stream, KEYS[2] meta hash
-- ARGV[1] base, ARGV[2] stream id, ARGV[3] sharded, ARGV[4] media type, ARGV[5] Stream-Seq, ARGV[6] '1'
-- if a Stream-Seq is given, ARGV[7] producer id ('' for none), ARGV[8] its epoch, ARGV[9] its sequence
-- number, ARGV[10] '1' to close, ARGV[11] the terminal event's data, then (event name or '', data) pairs.
-- Returns {outcome, newest data position, '1' if closed else '0', producer epoch or '', producer seq or ''}.
local m = redis.call('HMGET', KEYS[2], 'status', 'last', 'mtype', 'sseq', 'cby', 'dttl', 'dexp', 'name', 'deleted')
if not m[1] or not m[3] then
  return {'missing', '0', '0', '', ''}
end
local last = tonumber(m[2])
if m[9] == '1' then
  return {'deleted', m[2], '0', '', ''}
end
local count = (#ARGV - 11) / 2
local producer = ARGV[7]
local claim = ARGV[8] .. ':' .. ARGV[9] .. ':' .. producer
if m[1] ~= 'running' then
  local tail = string.format('%d', last - 1)
  if count == 0 or (producer ~= '' and m[5] == claim) then
    return {'duplicate', tail, '1', '', producer ~= '' and ARGV[9] or ''}
  end
  return {'closed', tail, '1', '', ''}
end
local tail = string.format('%d', last)
if count > 0 and ARGV[4] ~= m[3] then
  return {'content_type', tail, '0', '', ''}
end
local epoch, seq = tonumber(ARGV[8]), tonumber(ARGV[9])
if producer ~= '' then
  local state = redis.call('HGET', KEYS[2], 'p:' .. producer)
  local expected = 0
  if state then
    local colon = string.find(state, ':', 1, true)
    local known_epoch, known_seq = tonumber(string.sub(state, 1, colon - 1)), tonumber(string.sub(state, colon + 1))
    if epoch < known_epoch then
      return {'stale_epoch', tail, '0', string.format('%d', known_epoch), ''}
    end
    if epoch == known_epoch and seq <= known_seq then
      return {'duplicate', tail, '0', string.format('%d', known_epoch), string.format('%d', known_seq)}
    end
    if epoch > known_epoch then
      if seq ~= 0 then
        return {'epoch_restart', tail, '0', '', ''}
      end
    else
      expected = known_seq + 1
    end
  end
  if seq ~= expected then
    return {'seq_gap', tail, '0', '', string.format('%d', expected)}
  end
end
if ARGV[6] == '1' and m[4] and bytes_le(ARGV[5], m[4]) then
  return {'stream_seq', tail, '0', '', ''}
end
last = last + add_events(KEYS[1], last + 1, 12)
tail = string.format('%d', last)
redis.call('HSET', KEYS[2], 'last', last)
if producer ~= '' then
  redis.call('HSET', KEYS[2], 'p:' .. producer, ARGV[8] .. ':' .. ARGV[9])
end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[2], 'sseq', ARGV[5])
end
local closed = '0'
if ARGV[10] == '1' then
  last = last + 1
  redis.call('XADD', KEYS[1], '0-' .. string.format('%d', last), 'd', ARGV[11], 'e', 'end')
  redis.call('HSET', KEYS[2], 'status', 'done', 'last', last, 'cby', producer ~= '' and claim or '')
  closed = '1'
end
durable_expire(m[6], m[7], {KEYS[1], KEYS[2], ARGV[1] .. ':name:' .. m[8]})
if count > 0 or closed == '1' then
  notify(ARGV[1], ARGV[2], ARGV[3], string.format('%d', last))
end
if closed == '1' then
  notify(ARGV[1], ARGV[2], ARGV[3], string.format('%d', last), 'end')
end
return {'appended', tail, closed, producer ~= '' and ARGV[8] or '', producer ~= '' and ARGV[9] or ''}
