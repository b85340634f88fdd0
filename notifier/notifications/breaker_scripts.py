"""The circuit breakers' Lua scripts (``notifier.notifications.breakers``): each reads and
changes one provider's breaker atomically, on Redis's clock (``TIME``), never a host's.
"""

# KEYS[1] breaker; fields: state ('open' | 'half_open'; absent = closed), failures
# (consecutive), opened_at, retry_at, probe (the probe's token), probe_until, and the window's
# slots 'c:<n>' (calls) and 'e:<n>' (errors).
_CLOCK = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# ARGV open_for, probe token, keep (s). Returns 0 refused, 1 allowed (closed), 2 the probe.
ALLOW_SCRIPT = (
    _CLOCK
    + """
local s = redis.call('HMGET', KEYS[1], 'state', 'retry_at', 'probe_until')
if s[1] == 'open' then
  if now < tonumber(s[2]) then return 0 end
elseif s[1] == 'half_open' then
  if now < tonumber(s[3]) then return 0 end
else
  return 1
end
local open_for = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe', ARGV[2], 'probe_until', now + open_for)
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
return 2
"""
)

# ARGV ok (1/0), probe token ('' if none), consecutive failures, error rate, window, min calls,
# open_for, keep (s), slots, earlier successes (successful calls made before this one and not
# reported yet: a batch reports them together). Returns the state after the call.
RECORD_SCRIPT = (
    _CLOCK
    + """
local ok = ARGV[1] == '1'
local open_for = tonumber(ARGV[7])
local keep_ms = math.ceil(tonumber(ARGV[8]) * 1000)
local s = redis.call('HMGET', KEYS[1], 'state', 'probe', 'failures')
local failures = tonumber(s[3]) or 0
local function open()
  redis.call('HSET', KEYS[1], 'state', 'open', 'failures', failures, 'opened_at', now,
    'retry_at', now + open_for)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  redis.call('PEXPIRE', KEYS[1], keep_ms)
  return 'open'
end
if s[1] == 'open' then
  return 'open'
elseif s[1] == 'half_open' then
  if s[2] ~= ARGV[2] then return 'half_open' end
  if ok then
    redis.call('DEL', KEYS[1])
    return 'closed'
  end
  failures = failures + 1
  return open()
end
local earlier = tonumber(ARGV[10]) or 0
if ok or earlier > 0 then failures = 0 end
if not ok then failures = failures + 1 end
local slots = tonumber(ARGV[9])
local slot = math.floor(now / (tonumber(ARGV[5]) / slots))
redis.call('HINCRBY', KEYS[1], 'c:' .. slot, 1 + earlier)
if not ok then redis.call('HINCRBY', KEYS[1], 'e:' .. slot, 1) end
local calls, errors = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local kind, n = string.match(fields[i], '^([ce]):(%d+)$')
  if kind then
    if tonumber(n) <= slot - slots then
      redis.call('HDEL', KEYS[1], fields[i])
    elseif kind == 'c' then
      calls = calls + tonumber(fields[i + 1])
    else
      errors = errors + tonumber(fields[i + 1])
    end
  end
end
if failures >= tonumber(ARGV[3])
    or (calls >= tonumber(ARGV[6]) and errors > tonumber(ARGV[4]) * calls) then
  return open()
end
redis.call('HSET', KEYS[1], 'failures', failures)
redis.call('PEXPIRE', KEYS[1], keep_ms)
return 'closed'
"""
)

# ARGV window, slots. Read only. Returns {state, failures, calls, errors, opened_at, retry_at,
# probe_until, now} as strings ('' when absent): Redis would truncate Lua numbers to integers.
STATUS_SCRIPT = (
    _CLOCK
    + """
local slots = tonumber(ARGV[2])
local slot = math.floor(now / (tonumber(ARGV[1]) / slots))
local found = {}
local calls, errors = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local kind, n = string.match(fields[i], '^([ce]):(%d+)$')
  if kind then
    if tonumber(n) > slot - slots then
      if kind == 'c' then calls = calls + tonumber(fields[i + 1])
      else errors = errors + tonumber(fields[i + 1]) end
    end
  else
    found[fields[i]] = fields[i + 1]
  end
end
return {found['state'] or 'closed', found['failures'] or '0', tostring(calls), tostring(errors),
  found['opened_at'] or '', found['retry_at'] or '', found['probe_until'] or '', tostring(now)}
"""
)
