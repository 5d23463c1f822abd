-- Token bucket for one sending list, shared by every daemon.
--
-- KEYS[1]  the bucket (a hash: tokens, ts)
-- ARGV[1]  refill rate, tokens per second (float, > 0)
-- ARGV[2]  capacity: the burst (float, >= 1)
-- ARGV[3]  permits requested (integer, >= 1)
--
-- Returns {granted, wait_ms}: up to ARGV[3] permits granted now, and when
-- fewer were granted, how long until the next permit exists.
--
-- Time comes from the Redis server (TIME), so daemons with skewed clocks
-- still share one consistent bucket. Effects replication (Redis >= 5) makes
-- TIME safe inside a script.
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end

local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(capacity, tokens + elapsed * rate / 1000000)

local granted = math.min(requested, math.floor(tokens))
if granted < 0 then granted = 0 end
tokens = tokens - granted

-- %.0f keeps the microsecond timestamp exact (tostring would round it).
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.0f', now))
-- An idle bucket refills to capacity; keep it only as long as that takes.
local ttl_ms = math.ceil(capacity / rate * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl_ms)

local wait_ms = 0
if granted < requested then
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
  if wait_ms < 1 then wait_ms = 1 end
end
return {granted, wait_ms}
