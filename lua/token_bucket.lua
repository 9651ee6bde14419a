-- token_bucket.lua: the authoritative token bucket behind Sluice's slices (SPEC §4, §8).
--
-- KEYS[1]  sluice:{<rule>:<key>}    hash: tk tokens (may be fractional), ts last refill (µs of
--                                    Redis TIME), o tokens out in grants, n last grant id
-- KEYS[2]  sluice:{<rule>:<key>}:g  sorted set of outstanding grants: member "<id>:<amount>",
--                                    score = expiry (µs of Redis TIME)
-- ARGV     op, rate, per_us, burst, then per op:
--   acquire  want, min, ttl_us [, prev_id, prev_granted, prev_unused]
--            -> {granted, id, remaining, retry_after_us (-1: never), reset_us}
--            The optional prev_* settle the caller's previous grant first (exactly as
--            settle does), so renewing a slice costs one round trip, not two.
--   settle   id, granted, unused -> 1 if the grant was still outstanding, 0 if not
--   peek                         -> {remaining, reset_us}, changes nothing
--
-- Invariant: tk + o <= burst after every call.
--   * refill sets tk = min(burst - o, tk + elapsed*rate/per), so afterwards tk <= burst - o;
--   * a grant moves g tokens from tk to o, leaving tk + o unchanged;
--   * an expiring grant lowers o only: its tokens count as spent and never return to tk;
--   * a settle lowers o by the grant's amount, then adds at most its unused part to tk,
--     capped again at burst - o.
-- Why that is the safety promise: every token a node admits comes from a grant, which it
-- stops using before the grant's expiry here. Grants draw only from tk, and tk gains only
-- refill (at most rate*elapsed) and unused tokens handed back (never admitted). So in any
-- window [a, b] the tokens admitted are at most tk(a) + o(a) + rate*(b - a), which is
-- <= burst + rate*(b - a).
--
-- Time is Redis TIME only, never a caller's clock. Requires Redis >= 5, which replicates
-- a script's effects rather than re-running it (TIME would differ on a replica), and
-- maxmemory-policy noeviction: an evicted bucket would come back full.

-- Keys outlive the moment the bucket is full again by this much: slack for rounding to ms.
local EXPIRY_MARGIN_MS = 1000
-- Cap on key lifetimes, so absurdly slow buckets still give PEXPIRE a valid integer.
local MAX_EXPIRY_MS = 1e13
-- MAX_INT, int, amount, arg_error, int_arg, now (Redis TIME in µs) and expired come from
-- common.lua, which is prepended.

local op = ARGV[1]
local rate = int_arg(2, 'rate', 1)
local per = int_arg(3, 'per_us', 1)
local burst = int_arg(4, 'burst', 1)


-- load returns tk, ts, o and whether the bucket is new. A new bucket starts full, less any
-- grants still recorded (only possible if the hash alone was lost, e.g. evicted).
local function load()
  local h = redis.call('HMGET', KEYS[1], 'tk', 'ts', 'o')
  if h[1] and h[2] and h[3] then
    return tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), false
  end
  local o = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    o = o + amount(m)
  end
  return burst - o, now, o, true
end

-- load_for_write is load for the ops that save. Grant ids of a new bucket start at its
-- creation time, so they stay unique after the keys expire and the bucket starts over:
-- a late settle can never match a younger grant.
local function load_for_write()
  local tk, ts, o, new = load()
  if new then
    redis.call('HSET', KEYS[1], 'n', int(now))
  end
  return tk, ts, o
end

-- refill adds what accrued since ts, capped at burst - o. A clock that stepped back (say
-- after a failover) adds nothing and keeps ts, so no interval is ever counted twice.
local function refill(tk, ts, o)
  local elapsed = math.max(0, now - ts)
  return math.min(burst - o, tk + elapsed * rate / per), math.max(ts, now)
end

-- until_us is how long until the bucket holds `need` tokens, were nothing else taken.
local function until_us(tk, ts, need)
  return math.max(0, ts - now) + math.max(0, need - tk) * per / rate
end

local function remaining(tk)
  return math.max(0, math.floor(tk))
end

-- retry_after_us is how long until `need` tokens can be granted, -1 if never. When the
-- cap burst - o is below `need`, outstanding grants must also end; they are assumed to
-- run until they expire, so this is an upper estimate when nodes settle early.
local function retry_after_us(tk, ts, o, need)
  if need > burst then
    return -1
  end
  local wait = until_us(tk, ts, need)
  local cap = burst - o
  if need > cap then
    local grants = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    for i = 1, #grants, 2 do
      cap = cap + amount(grants[i])
      if cap >= need then
        wait = math.max(wait, tonumber(grants[i + 1]) - now)
        break
      end
    end
  end
  return math.ceil(wait)
end

-- save stores the state and lets both keys expire once the bucket would be full again and
-- the last grant has expired, when a new bucket would be identical to this one.
local function save(tk, ts, o)
  redis.call('HSET', KEYS[1], 'tk', string.format('%.17g', tk), 'ts', int(ts), 'o', int(o))
  local live_us = until_us(tk, ts, burst)
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if last[2] then
    live_us = math.max(live_us, tonumber(last[2]) - now)
  end
  local ms = int(math.min(MAX_EXPIRY_MS, math.ceil(live_us / 1000) + EXPIRY_MARGIN_MS))
  redis.call('PEXPIRE', KEYS[1], ms)
  redis.call('PEXPIRE', KEYS[2], ms)
end

-- settle_grant ends an outstanding grant: its amount leaves o and its unused part returns to
-- tk, capped at burst - o. A grant no longer recorded expired and counted as spent.
local function settle_grant(tk, o, id, granted, unused)
  local found = redis.call('ZREM', KEYS[2], int(id) .. ':' .. int(granted))
  if found == 1 then
    o = o - granted
    tk = math.min(burst - o, tk + unused)
  end
  return tk, o, found
end

-- settle_args reads a grant to settle (id, granted, unused) from ARGV[i..i+2].
local function settle_args(i, prefix)
  local id = int_arg(i, prefix .. 'id', 1)
  local granted = int_arg(i + 1, prefix .. 'granted', 1)
  local unused = int_arg(i + 2, prefix .. 'unused', 0)
  if not arg_error and unused > granted then
    arg_error = 'ERR sluice: ' .. prefix .. 'unused must not exceed ' .. prefix .. 'granted'
  end
  return id, granted, unused
end

if op == 'acquire' then
  local want = int_arg(5, 'want', 1)
  local min = int_arg(6, 'min', 1)
  local ttl = int_arg(7, 'ttl_us', 1)
  if not arg_error and min > want then
    arg_error = 'ERR sluice: min must not exceed want'
  end
  local prev_id, prev_granted, prev_unused = 0, 0, 0
  if ARGV[8] then
    prev_id, prev_granted, prev_unused = settle_args(8, 'prev_')
  end
  if arg_error then
    return redis.error_reply(arg_error)
  end
  local tk, ts, o = load_for_write()
  o = o - expired(true)
  tk, ts = refill(tk, ts, o)
  if prev_id > 0 then
    tk, o = settle_grant(tk, o, prev_id, prev_granted, prev_unused)
  end
  local granted, id = 0, 0
  if math.floor(tk) >= min then
    granted = math.min(want, math.floor(tk))
    tk, o = tk - granted, o + granted
    id = redis.call('HINCRBY', KEYS[1], 'n', 1)
    redis.call('ZADD', KEYS[2], int(now + ttl), int(id) .. ':' .. int(granted))
  end
  save(tk, ts, o)
  local retry = 0
  if granted == 0 then
    retry = retry_after_us(tk, ts, o, min)
  end
  return {granted, id, remaining(tk), retry, math.ceil(until_us(tk, ts, burst))}
end

if op == 'settle' then
  local id, granted, unused = settle_args(5, '')
  if arg_error then
    return redis.error_reply(arg_error)
  end
  local tk, ts, o = load_for_write()
  o = o - expired(true)
  tk, ts = refill(tk, ts, o)
  local found
  tk, o, found = settle_grant(tk, o, id, granted, unused)
  save(tk, ts, o)
  return found
end

if op == 'peek' then
  if arg_error then
    return redis.error_reply(arg_error)
  end
  local tk, ts, o = load()
  tk, ts = refill(tk, ts, o - expired(false))
  return {remaining(tk), math.ceil(until_us(tk, ts, burst))}
end

return redis.error_reply('ERR sluice: unknown op ' .. tostring(op))
