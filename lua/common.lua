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
