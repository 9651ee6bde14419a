-- token_bucket.lua: the authoritative token bucket behind Sluice's slices (SPEC §4, §8).
--
-- KEYS[1]  sluice:{<rule>:<key>}    hash: tk tokens (may be fractional), ts last refill (µs of
--                                    Redis TIME), o tokens out in grants, n last grant id,
--                                    e and x bounds on the grants' expiries (no grant expires
--                                    before e or after x; 0 with none), p the key's expiry,
--                                    and one field g<id> = "<amount>:<expiry µs>" per grant
-- KEYS[2]  sluice:{<rule>:<key>}:g  the sorted set of grants of earlier versions: read once,
--                                    moved into the hash and deleted (adopt_legacy)
--
-- Bookkeeping costs what changed: a call reads the hash's fixed fields (and the grant it
-- settles) with one HMGET, writes them with one HSET, and reads every grant only when the
-- earliest expiry e has passed or a denial must say when grants end; PEXPIRE runs only
-- when the key's expiry must move.
-- ARGV     op, rate, per_us, burst, then per op:
--   acquire  want, min, ttl_us [, prev_id, prev_granted, prev_unused [, roomy_want, roomy_ttl_us]]
--            -> {granted, id, remaining, retry_after_us (-1: never), reset_us, ttl_us}
--            retry_after_us is how long until min tokens can be granted: with nothing granted,
--            counting the grants that must end first; after a grant, until refill brings min more.
--            The optional prev_* settle the caller's previous grant first (exactly as
--            settle does; prev_id 0: nothing to settle), so renewing a slice costs one
--            round trip, not two. roomy_*: when the bucket would still hold at least half
--            its burst after granting roomy_want, grant that many for roomy_ttl_us instead
--            of up to want for ttl_us. ttl_us in the reply is the grant's lifetime.
--   settle   id, granted, unused -> 1 if the grant was still outstanding, 0 if not
--   peek                         -> {remaining, reset_us, outstanding}, changes nothing
--   renew_many n   n renewals, KEYS[2i-1] and KEYS[2i] naming bucket i; ARGV from 3 holds
--                  ACQUIRE_WIDTH values per bucket: rate, per_us, burst, want, min, ttl_us,
--                  prev_id, prev_granted, prev_unused, roomy_want, roomy_ttl_us (prev_id 0:
--                  nothing to settle; roomy_want 0: no roomy ask) -> acquire's 6 values per
--                  bucket, one flat array
--   settle_many n  n settles, keys as renew_many; SETTLE_WIDTH values per bucket: rate,
--                  per_us, burst, id, granted, unused -> settle's answer per bucket
--   Each bucket of a *_many call behaves exactly as its own call at the same Redis TIME, in
--   order (a key named twice sees the first call's effects). Every argument is checked
--   before anything is written. On Redis Cluster all its keys must share one hash slot.
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

-- Keys outlive the moment the bucket is full again by EXPIRY_MARGIN_US to EXPIRY_MARGIN_US/2:
-- PEXPIRE is called again only once less than half the margin is left.
local EXPIRY_MARGIN_US = 1000000
-- Cap on key lifetimes, so absurdly slow buckets still give PEXPIRE a valid integer.
local MAX_EXPIRY_MS = 1e13
-- MAX_INT, int, arg_error, int_arg and now (Redis TIME in µs) come from common.lua, which
-- is prepended.

local op = ARGV[1]
-- The bucket the functions below work on: its hash K, its legacy grant set G and its
-- parameters. A *_many call sets them for each bucket in turn.
local K, G, rate, per, burst

-- use_bucket makes bucket i (1-based) of the call current, its parameters from ARGV[at..at+2].
local function use_bucket(i, at)
  K, G = KEYS[2 * i - 1], KEYS[2 * i]
  rate, per, burst = int_arg(at, 'rate', 1), int_arg(at + 1, 'per_us', 1), int_arg(at + 2, 'burst', 1)
end

-- grant_field names grant id's field in the hash; its value is "<amount>:<expiry µs>".
local function grant_field(id)
  return 'g' .. int(id)
end

local function parse_grant(v)
  local amount, expiry = string.match(v, '^(%d+):(%d+)$')
  return tonumber(amount), tonumber(expiry)
end

-- adopt_legacy reads the live grants of an earlier version's sorted set (member
-- "<id>:<amount>", score expiry) and returns their sum and earliest and latest expiry;
-- with move, it moves them into the hash. It runs only when the hash lacks the field e,
-- i.e. for a new bucket or one written by an earlier version, so it costs nothing on the
-- common path.
local function adopt_legacy(move)
  local o, e, x = 0, 0, 0
  local z = redis.call('ZRANGE', G, 0, -1, 'WITHSCORES')
  for i = 1, #z, 2 do
    local id, amount = string.match(z[i], '^(%d+):(%d+)$')
    local expiry = tonumber(z[i + 1])
    if id and expiry > now then
      if move then
        redis.call('HSET', K, grant_field(id), amount .. ':' .. int(expiry))
      end
      o = o + tonumber(amount)
      if e == 0 or expiry < e then
        e = expiry
      end
      x = math.max(x, expiry)
    end
  end
  if move and #z > 0 then
    redis.call('DEL', G)
  end
  return o, e, x
end

-- load reads the bucket: s.tk, s.ts, s.o, s.n (last grant id), s.e (no outstanding grant
-- expires before it; 0 with none), s.x (none expires after it), s.p (the key's expiry as
-- last set) and s.prev, the stored value of grant field prev (may be nil). A new bucket
-- starts full. Grant ids of a new bucket start at its creation time, so they stay unique
-- after the key expires and the bucket starts over: a late settle never matches a younger
-- grant. Only with write may it change anything.
local function load(write, prev)
  local h = redis.call('HMGET', K, 'tk', 'ts', 'o', 'n', 'e', 'x', 'p', prev or 'n')
  local s = {}
  if h[1] and h[2] and h[3] and h[5] then
    s.tk, s.ts, s.o, s.n = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), tonumber(h[4])
    s.e, s.x, s.p = tonumber(h[5]), tonumber(h[6]) or 0, tonumber(h[7]) or 0
    if prev then
      s.prev = h[8]
    end
    return s
  end
  local o, e, x = adopt_legacy(write)
  s.o, s.e, s.x, s.p = o, e, x, 0
  if h[1] and h[2] then
    s.tk, s.ts, s.n = math.min(tonumber(h[1]), burst - o), tonumber(h[2]), tonumber(h[4]) or now
  else
    s.tk, s.ts, s.n = burst - o, now, now
  end
  if prev then
    s.prev = redis.call('HGET', K, prev)
  end
  return s
end

-- sweep ends the grants past their expiry: their tokens leave o as spent. It reads the
-- grants only once the earliest expiry has passed, so the common call costs nothing here.
-- The fields of ended grants are appended to gone (nil: peek, nothing is removed).
local function sweep(s, gone)
  if s.e == 0 or now < s.e then
    return
  end
  local all = redis.call('HGETALL', K)
  local e = 0
  for i = 1, #all, 2 do
    if string.byte(all[i], 1) == 103 then -- 'g': a grant
      local amount, expiry = parse_grant(all[i + 1])
      if expiry <= now then
        s.o = s.o - amount
        if gone then
          gone[#gone + 1] = all[i]
        end
      elseif e == 0 or expiry < e then
        e = expiry
      end
    end
  end
  s.e = e
end

-- refill adds what accrued since ts, capped at burst - o. A clock that stepped back (say
-- after a failover) adds nothing and keeps ts, so no interval is ever counted twice.
local function refill(s)
  local elapsed = math.max(0, now - s.ts)
  s.tk, s.ts = math.min(burst - s.o, s.tk + elapsed * rate / per), math.max(s.ts, now)
end

-- until_us is how long until the bucket holds `need` tokens, were nothing else taken.
local function until_us(s, need)
  return math.max(0, s.ts - now) + math.max(0, need - s.tk) * per / rate
end

local function remaining(s)
  return math.max(0, math.floor(s.tk))
end

-- retry_after_us is how long until `need` tokens can be granted, -1 if never. When the
-- cap burst - o is below `need`, outstanding grants must also end; they are assumed to
-- run until they expire, so this is an upper estimate when nodes settle early.
local function retry_after_us(s, need)
  if need > burst then
    return -1
  end
  local wait = until_us(s, need)
  local cap = burst - s.o
  if need > cap then
    local grants = {}
    local all = redis.call('HGETALL', K)
    for i = 1, #all, 2 do
      if string.byte(all[i], 1) == 103 then
        local amount, expiry = parse_grant(all[i + 1])
        grants[#grants + 1] = {amount, expiry}
      end
    end
    table.sort(grants, function(a, b) return a[2] < b[2] end)
    for _, g in ipairs(grants) do
      cap = cap + g[1]
      if cap >= need then
        wait = math.max(wait, g[2] - now)
        break
      end
    end
  end
  return math.ceil(wait)
end

-- save writes the state with one HSET (plus HDEL of the ended grants in gone), and keeps
-- the key until the bucket would be full again and the last grant has expired, when a
-- new bucket would be identical to this one. add is a new grant's field and value, or nil.
local function save(s, gone, add, value)
  if #gone > 0 then
    redis.call('HDEL', K, unpack(gone))
  end
  if s.o <= 0 then
    s.e, s.x = 0, 0
  end
  local needed = now + math.max(until_us(s, burst), s.x - now)
  local args = {'tk', string.format('%.17g', s.tk), 'ts', int(s.ts), 'o', int(s.o), 'n', int(s.n),
    'e', int(s.e), 'x', int(s.x)}
  local ms
  if needed + EXPIRY_MARGIN_US / 2 > s.p then
    s.p = math.min(needed + EXPIRY_MARGIN_US, now + MAX_EXPIRY_MS * 1000)
    ms = math.ceil((s.p - now) / 1000)
    args[#args + 1] = 'p'
    args[#args + 1] = int(s.p)
  end
  if add then
    args[#args + 1] = add
    args[#args + 1] = value
  end
  redis.call('HSET', K, unpack(args))
  if ms then
    redis.call('PEXPIRE', K, int(ms))
  end
end

-- settle_grant ends outstanding grant prev_field: its amount leaves o and its unused part
-- returns to tk, capped at burst - o. A grant no longer recorded, expired (counted as spent)
-- or recorded with another amount matches nothing.
local function settle_grant(s, gone, field, granted, unused)
  if not s.prev then
    return 0
  end
  local amount, expiry = parse_grant(s.prev)
  if amount ~= granted or expiry <= now then
    return 0
  end
  gone[#gone + 1] = field
  s.o = s.o - granted
  s.tk = math.min(burst - s.o, s.tk + unused)
  return 1
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

-- acquire_args reads an acquire's arguments from ARGV[at..]: want, min, ttl_us, then the
-- optional prev_* and roomy_* (fixed: all present, 0 meaning none).
local function acquire_args(at, fixed)
  local a = {want = int_arg(at, 'want', 1), min = int_arg(at + 1, 'min', 1), ttl = int_arg(at + 2, 'ttl_us', 1),
    prev_id = 0, prev_granted = 0, prev_unused = 0, roomy_want = 0, roomy_ttl = 0}
  if not arg_error and a.min > a.want then
    arg_error = 'ERR sluice: min must not exceed want'
  end
  if ARGV[at + 3] and ARGV[at + 3] ~= '0' then
    a.prev_id, a.prev_granted, a.prev_unused = settle_args(at + 3, 'prev_')
  end
  if ARGV[at + 6] and not (fixed and ARGV[at + 6] == '0') then
    a.roomy_want = int_arg(at + 6, 'roomy_want', 1)
    a.roomy_ttl = int_arg(at + 7, 'roomy_ttl_us', 1)
  end
  return a
end

-- acquire settles a.prev (if any), then grants from the current bucket; it returns the
-- 6 reply values.
local function acquire(a)
  local want, min, ttl = a.want, a.min, a.ttl
  local need = min -- the caller's cost: what its next request needs, whatever is granted now
  local prev
  if a.prev_id > 0 then
    prev = grant_field(a.prev_id)
  end
  local s = load(true, prev)
  local gone = {}
  sweep(s, gone)
  refill(s)
  if prev then
    settle_grant(s, gone, prev, a.prev_granted, a.prev_unused)
  end
  local granted, id, add, value = 0, 0, nil, nil
  if a.roomy_want > want and s.tk - a.roomy_want >= burst / 2 then
    -- Far from empty: a larger, longer-lived slice costs the other callers nothing now,
    -- and what it leaves unspent comes back when it is settled.
    want, min, ttl = a.roomy_want, a.roomy_want, a.roomy_ttl
  end
  if math.floor(s.tk) >= min then
    granted = math.min(want, math.floor(s.tk))
    s.tk, s.o = s.tk - granted, s.o + granted
    s.n = s.n + 1
    id = s.n
    local expiry = now + ttl
    add, value = grant_field(id), int(granted) .. ':' .. int(expiry)
    if s.e == 0 or expiry < s.e then
      s.e = expiry
    end
    s.x = math.max(s.x, expiry)
  end
  save(s, gone, add, value)
  -- The bucket's real wait for the next request of this size, which a caller reports when it
  -- denies. After a grant it is the refill time alone (a lower estimate: scanning the grants
  -- that may have to end first would cost every grant a read of them all).
  local retry
  if granted == 0 then
    retry = retry_after_us(s, need)
  else
    retry = math.ceil(until_us(s, need))
  end
  return {granted, id, remaining(s), retry, math.ceil(until_us(s, burst)), ttl}
end

-- settle ends grant id of the current bucket; 1 if it was still outstanding.
local function settle(id, granted, unused)
  local field = grant_field(id)
  local s = load(true, field)
  local gone = {}
  sweep(s, gone)
  refill(s)
  local found = settle_grant(s, gone, field, granted, unused)
  save(s, gone)
  return found
end

local ACQUIRE_WIDTH, SETTLE_WIDTH = 11, 6

-- many reads a *_many call's arguments, width per bucket, with read(i, at) (at: where
-- bucket i's op arguments start), checks them all, then runs apply(i, args) for each bucket
-- and returns the answers in one flat array.
local function many(width, read, apply)
  local n = int_arg(2, 'n', 1)
  if not arg_error and (#KEYS ~= 2 * n or #ARGV ~= 2 + n * width) then
    arg_error = string.format('ERR sluice: %s of %d buckets needs %d keys and %d arguments, got %d and %d',
      op, n, 2 * n, 2 + n * width, #KEYS, #ARGV)
  end
  local args = {}
  for i = 1, (arg_error and 0 or n) do
    local at = 3 + (i - 1) * width
    use_bucket(i, at)
    args[i] = read(i, at + 3)
  end
  if arg_error then
    return redis.error_reply(arg_error)
  end
  local out = {}
  for i = 1, n do
    use_bucket(i, 3 + (i - 1) * width)
    local v = apply(i, args[i])
    if type(v) == 'table' then
      for _, x in ipairs(v) do
        out[#out + 1] = x
      end
    else
      out[#out + 1] = v
    end
  end
  return out
end

if op == 'renew_many' then
  return many(ACQUIRE_WIDTH, function(_, at) return acquire_args(at, true) end,
    function(_, a) return acquire(a) end)
end

if op == 'settle_many' then
  return many(SETTLE_WIDTH, function(_, at) return {settle_args(at, '')} end,
    function(_, a) return settle(a[1], a[2], a[3]) end)
end

use_bucket(1, 2)

if op == 'acquire' then
  local a = acquire_args(5, false)
  if arg_error then
    return redis.error_reply(arg_error)
  end
  return acquire(a)
end

if op == 'settle' then
  local id, granted, unused = settle_args(5, '')
  if arg_error then
    return redis.error_reply(arg_error)
  end
  return settle(id, granted, unused)
end

if op == 'peek' then
  if arg_error then
    return redis.error_reply(arg_error)
  end
  local s = load(false)
  sweep(s, nil)
  refill(s)
  return {remaining(s), math.ceil(until_us(s, burst)), math.floor(s.o)}
end

return redis.error_reply('ERR sluice: unknown op ' .. tostring(op))
