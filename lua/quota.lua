-- quota.lua: the authoritative quota counter behind Sluice's quota slices (SPEC §3, §8).
--
-- One pair of keys per (rule, key, calendar window):
-- KEYS[1]  sluice:{q:<rule>:<key>}:<start_us>    hash: c tokens consumed, o tokens out in
--                                                 grants, n last grant id
-- KEYS[2]  sluice:{q:<rule>:<key>}:<start_us>:g  sorted set of outstanding grants: member
--                                                 "<id>:<amount>", score = expiry (µs of Redis TIME)
-- ARGV     op, limit, start_us, end_us, then per op:
--   acquire  want, min, ttl_us, charge, prev_id, prev_granted, prev_unused
--            -> {1, now_us, granted, id, remaining, grant_ttl_us}
--            charge adds tokens spent without Redis (fallback mode) to c first; prev_* settle
--            the caller's previous grant of this window (prev_id 0: none). want 0 grants nothing.
--   settle   id, granted, unused   -> {1, now_us, found}
--   peek                           -> {1, now_us, used, remaining, outstanding}, changes nothing;
--                                     used counts the outstanding grants too
--   reset                          -> {1, now_us}: c = 0, the window starts over
-- Every op first checks that Redis TIME lies in [start_us, end_us), the window the caller
-- named; if not it changes nothing and answers {0, now_us}, and the caller asks again with
-- the window that holds now_us. So Redis's clock alone decides which window a call counts
-- in, and every node agrees on it without the script knowing the calendar.
--
-- Invariant: c + o counts every token admitted in the window or still out in a grant, so
-- granting only from limit - c - o never admits more than limit:
--   * a grant moves g tokens into o; its expiry is capped at the window's end, and the node
--     stops spending it before that expiry, so no token of this window is spent in the next;
--   * an expiring grant moves its whole amount from o to c (it may all have been spent);
--   * a settle moves the spent part to c and drops the unused part.
-- A reset sets c to 0 but keeps o: tokens still out in slices stay counted.
--
-- Requires Redis >= 5 (effects replication, since TIME differs on a replica).

-- Keys outlive their window by this much: late settles and peeks still find them.
local EXPIRY_MARGIN_MS = 60000
-- MAX_INT, int, amount, arg_error, int_arg, now (Redis TIME in µs) and expired come from
-- common.lua, which is prepended.

local op = ARGV[1]
local limit = int_arg(2, 'limit', 1)
local start_us = int_arg(3, 'start_us', 0)
local end_us = int_arg(4, 'end_us', 1)
if not arg_error and end_us <= start_us then
  arg_error = 'ERR sluice: end_us must be after start_us'
end


-- load returns c and o with expired grants moved from o to c, and whether the window has
-- state. Expired grants are removed from the set unless peeking.
local function load(remove)
  local h = redis.call('HMGET', KEYS[1], 'c', 'o')
  local c, o = tonumber(h[1]) or 0, tonumber(h[2]) or 0
  local gone = expired(remove)
  return c + gone, o - gone, h[1] ~= false
end

-- save stores c and o; a new window's grant ids start at its creation time, and both keys
-- expire a margin after the window ends.
local function save(c, o, existed)
  if not existed then
    redis.call('HSET', KEYS[1], 'n', int(now))
  end
  redis.call('HSET', KEYS[1], 'c', int(c), 'o', int(o))
  local at = int(math.ceil(end_us / 1000) + EXPIRY_MARGIN_MS)
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('PEXPIREAT', KEYS[2], at)
end

local function remaining(c, o)
  return math.max(0, limit - c - o)
end

if arg_error then
  return redis.error_reply(arg_error)
end
if now < start_us or now >= end_us then
  return {0, now}
end

if op == 'acquire' then
  local want = int_arg(5, 'want', 0)
  local min = int_arg(6, 'min', 0)
  local ttl = int_arg(7, 'ttl_us', 1)
  local charge = int_arg(8, 'charge', 0)
  local prev_id = int_arg(9, 'prev_id', 0)
  local prev_granted = int_arg(10, 'prev_granted', 0)
  local prev_unused = int_arg(11, 'prev_unused', 0)
  if not arg_error and min > want then
    arg_error = 'ERR sluice: min must not exceed want'
  end
  if not arg_error and prev_unused > prev_granted then
    arg_error = 'ERR sluice: prev_unused must not exceed prev_granted'
  end
  if arg_error then
    return redis.error_reply(arg_error)
  end
  local c, o, existed = load(true)
  c = c + charge
  if prev_id > 0 and redis.call('ZREM', KEYS[2], int(prev_id) .. ':' .. int(prev_granted)) == 1 then
    o = o - prev_granted
    c = c + prev_granted - prev_unused
  end
  local granted, id, grant_ttl = 0, 0, 0
  local left = remaining(c, o)
  if want > 0 and left >= math.max(min, 1) then
    granted = math.min(want, left)
    o = o + granted
    grant_ttl = math.min(ttl, end_us - now)
    if not existed then
      redis.call('HSET', KEYS[1], 'n', int(now))
      existed = true
    end
    id = redis.call('HINCRBY', KEYS[1], 'n', 1)
    redis.call('ZADD', KEYS[2], int(now + grant_ttl), int(id) .. ':' .. int(granted))
  end
  if existed or charge > 0 then
    save(c, o, existed)
  end
  return {1, now, granted, id, remaining(c, o), grant_ttl}
end

if op == 'settle' then
  local id = int_arg(5, 'id', 1)
  local granted = int_arg(6, 'granted', 1)
  local unused = int_arg(7, 'unused', 0)
  if not arg_error and unused > granted then
    arg_error = 'ERR sluice: unused must not exceed granted'
  end
  if arg_error then
    return redis.error_reply(arg_error)
  end
  local c, o, existed = load(true)
  if not existed then
    return {1, now, 0}
  end
  local found = redis.call('ZREM', KEYS[2], int(id) .. ':' .. int(granted))
  if found == 1 then
    o = o - granted
    c = c + granted - unused
  end
  save(c, o, existed)
  return {1, now, found}
end

if op == 'peek' then
  local c, o = load(false)
  return {1, now, c + o, remaining(c, o), o}
end

if op == 'reset' then
  local _, o, existed = load(true)
  if existed then
    save(0, o, existed)
  end
  return {1, now}
end

return redis.error_reply('ERR sluice: unknown op ' .. tostring(op))
