-- common.lua: helpers shared by Sluice's scripts. It is prepended to token_bucket.lua and
-- quota.lua when they are loaded (lua/scripts.go), so each runs as one chunk.

local MAX_INT = 9007199254740992 -- 2^53: beyond it doubles lose integers

local function int(x)
  return string.format('%.0f', x)
end

local function amount(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

local arg_error
local function int_arg(i, name, lowest)
  local v = tonumber(ARGV[i])
  if not v or v ~= math.floor(v) or v < lowest or v > MAX_INT then
    arg_error = arg_error or string.format('ERR sluice: %s must be an integer >= %d, got %q',
      name, lowest, tostring(ARGV[i]))
    return 0
  end
  return v
end

-- now is Redis TIME in µs: scripts never use a caller's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- expired sums the grants in KEYS[2] (a sorted set of "<id>:<amount>" by expiry) whose
-- expiry has passed, removing them unless peeking.
local function expired(remove)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', int(now))
  local sum = 0
  for _, m in ipairs(gone) do
    sum = sum + amount(m)
  end
  if remove and #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now))
  end
  return sum
end
