package redisstore

import "github.com/redis/go-redis/v9"

// Every change is one Lua script, so that it is atomic on the server and
// costs one round trip (EVALSHA; EVAL once after a restart of Redis).
//
// Scripts get the key prefix in ARGV and build the keys that depend on a
// record (its ID key, its subject's index) from it: Redis Cluster accepts
// that only when every key is in one slot, which is why [New] demands a
// hash tag in the prefix there.
//
// The now argument is Unix milliseconds from Options.Now, or "" for
// Redis's own clock (TIME), so that every instance uses one clock.
// Numbers go back to Redis through int(): Lua's default conversion keeps
// only 14 significant digits.

// prelude holds the helpers every script shares. deadline is
// tokenstore.Policy.Deadline, which must be computed inside the script to
// check and slide atomically; tokenstoretest and TestDeadlineMatchesPolicy
// hold them to the same answers.
const prelude = `
local function int(n) return string.format('%d', n) end

local function nowms(a)
  if a ~= '' then return tonumber(a) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function deadline(pol, c, u, ttl, mx)
  c, u, ttl, mx = tonumber(c), tonumber(u), tonumber(ttl), tonumber(mx)
  if pol == 'a' then return c + ttl end
  local d = u + ttl
  if mx > 0 and c + mx < d then d = c + mx end
  return d
end

local function fields(f)
  local r = {}
  for i = 1, #f, 2 do r[f[i]] = f[i + 1] end
  return r
end

-- drop deletes a record and its index entries.
local function drop(p, hex, id, sub)
  redis.call('DEL', p .. 't:' .. hex, p .. 'i:' .. id)
  redis.call('ZREM', p .. 's:' .. sub, hex)
  redis.call('ZREM', p .. 'e', hex .. sub)
end

-- create writes a record (meta: flat list of 'm:'-prefixed fields and
-- values) and its index entries; its keys expire grace ms after its deadline.
local function create(p, hex, id, sub, now, pol, ttl, mx, grace, meta)
  local rk = p .. 't:' .. hex
  if redis.call('EXISTS', rk) == 1 then
    return redis.error_reply('token hash collision')
  end
  local d = deadline(pol, now, now, ttl, mx)
  local at = int(d + grace)
  redis.call('HSET', rk, 'id', id, 'sub', sub, 'c', int(now), 'u', int(now),
    'pol', pol, 'ttl', ttl, 'max', mx, unpack(meta))
  redis.call('PEXPIREAT', rk, at)
  redis.call('SET', p .. 'i:' .. id, hex, 'PXAT', at)
  redis.call('ZADD', p .. 's:' .. sub, int(d), hex)
  redis.call('ZADD', p .. 'e', int(d), hex .. sub)
  return nil
end
`

// checkScript answers Validate (ARGV[2] == "1") and Lookup.
// KEYS: record. ARGV: now, use, prefix, grace ms.
// Returns {0} (not found), {-1, now} (expired) or
// {1, now, last use, wrote (0/1), record fields}.
var checkScript = redis.NewScript(prelude + `
local f = redis.call('HGETALL', KEYS[1])
if #f == 0 then return {0} end
local r = fields(f)
local now = nowms(ARGV[1])
local u = tonumber(r.u)
local d = deadline(r.pol, r.c, u, r.ttl, r.max)
if now >= d then return {-1, int(now)} end
local wrote = 0
if ARGV[2] == '1' and now > u then
  u = now
  wrote = 1
  redis.call('HSET', KEYS[1], 'u', int(now))
  local nd = deadline(r.pol, r.c, u, r.ttl, r.max)
  if nd ~= d then
    local p, hex = ARGV[3], string.sub(KEYS[1], -64)
    local at = int(nd + tonumber(ARGV[4]))
    redis.call('PEXPIREAT', KEYS[1], at)
    redis.call('PEXPIREAT', p .. 'i:' .. r.id, at)
    redis.call('ZADD', p .. 's:' .. r.sub, 'XX', int(nd), hex)
    redis.call('ZADD', p .. 'e', 'XX', int(nd), hex .. r.sub)
  end
end
return {1, int(now), int(u), wrote, f}
`)

// issueScript creates a record unless the subject holds limit live tokens.
// KEYS: record, subject index. ARGV: now, prefix, grace ms, limit, id,
// subject, policy kind, ttl ms, max ms, then metadata fields and values.
// Returns {1, now} or {-2, live tokens}.
var issueScript = redis.NewScript(prelude + `
local p = ARGV[2]
local now = nowms(ARGV[1])
local limit = tonumber(ARGV[4])
if limit > 0 then
  local live = 0
  local m = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #m, 2 do
    if redis.call('EXISTS', p .. 't:' .. m[i]) == 0 then
      redis.call('ZREM', KEYS[2], m[i]) -- Redis expired the record: prune
    elseif tonumber(m[i + 1]) > now then
      live = live + 1
    end
  end
  if live >= limit then return {-2, live} end
end
local meta = {}
for i = 10, #ARGV do meta[#meta + 1] = ARGV[i] end
local err = create(p, string.sub(KEYS[1], -64), ARGV[5], ARGV[6], now,
  ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[3]), meta)
if err then return err end
return {1, int(now)}
`)

// getScript reads the record of an ID. KEYS: ID key. ARGV: now, prefix.
// Returns {0} or {1, now, record fields}.
var getScript = redis.NewScript(prelude + `
local hex = redis.call('GET', KEYS[1])
if not hex then return {0} end
local f = redis.call('HGETALL', ARGV[2] .. 't:' .. hex)
if #f == 0 then return {0} end
return {1, int(nowms(ARGV[1])), f}
`)

// listScript returns a subject's records, pruning index entries whose
// record Redis has expired. KEYS: subject index. ARGV: now, prefix.
// Returns {now, {record fields}...}; the caller drops expired ones.
var listScript = redis.NewScript(prelude + `
local p = ARGV[2]
local now = nowms(ARGV[1])
local m = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, hex in ipairs(m) do
  local f = redis.call('HGETALL', p .. 't:' .. hex)
  if #f == 0 then
    redis.call('ZREM', KEYS[1], hex)
  else
    out[#out + 1] = f
  end
end
return {int(now), out}
`)

// revokeScript deletes a record. KEYS: record. ARGV: prefix.
// Returns 1, or 0 when there is none.
var revokeScript = redis.NewScript(prelude + `
local r = redis.call('HMGET', KEYS[1], 'id', 'sub')
if not r[1] then return 0 end
drop(ARGV[1], string.sub(KEYS[1], -64), r[1], r[2])
return 1
`)

// revokeIDScript deletes the record of an ID. KEYS: ID key. ARGV: prefix.
// Returns 1, or 0 when there is none.
var revokeIDScript = redis.NewScript(prelude + `
local p = ARGV[1]
local hex = redis.call('GET', KEYS[1])
if not hex then return 0 end
local r = redis.call('HMGET', p .. 't:' .. hex, 'id', 'sub')
if not r[1] then
  redis.call('DEL', KEYS[1])
  return 0
end
drop(p, hex, r[1], r[2])
return 1
`)

// revokeSubjectScript deletes up to ARGV[3] of a subject's records, expired
// or not. KEYS: subject index. ARGV: prefix, subject, chunk.
// Returns {deleted, entries left in the index}.
var revokeSubjectScript = redis.NewScript(prelude + `
local p, sub = ARGV[1], ARGV[2]
local m = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
local n = 0
for _, hex in ipairs(m) do
  local id = redis.call('HGET', p .. 't:' .. hex, 'id')
  if id then
    drop(p, hex, id, sub)
    n = n + 1
  else
    redis.call('ZREM', KEYS[1], hex)
    redis.call('ZREM', p .. 'e', hex .. sub)
  end
end
return {n, redis.call('ZCARD', KEYS[1])}
`)

// rotateScript replaces a live record by a new one with its subject,
// policy and metadata. KEYS: old record, new record. ARGV: now, prefix,
// grace ms, new id. Returns {0}, {-1, now} (expired) or
// {1, now, old record fields}.
var rotateScript = redis.NewScript(prelude + `
local p = ARGV[2]
local f = redis.call('HGETALL', KEYS[1])
if #f == 0 then return {0} end
local r = fields(f)
local now = nowms(ARGV[1])
if now >= deadline(r.pol, r.c, r.u, r.ttl, r.max) then return {-1, int(now)} end
local meta = {}
for i = 1, #f, 2 do
  if string.sub(f[i], 1, 2) == 'm:' then
    meta[#meta + 1] = f[i]
    meta[#meta + 1] = f[i + 1]
  end
end
local err = create(p, string.sub(KEYS[2], -64), ARGV[4], r.sub, now,
  r.pol, r.ttl, r.max, tonumber(ARGV[3]), meta)
if err then return err end
drop(p, string.sub(KEYS[1], -64), r.id, r.sub)
return {1, int(now), f}
`)

// sweepScript deletes up to ARGV[3] tokens whose deadline has passed,
// after the first ARGV[4] due entries (damaged records met earlier in the
// pass, which stay at the front of the due range).
// KEYS: expiry index. ARGV: now, prefix, chunk, skip.
// Returns {deleted, index entries looked at, now, ids of damaged records}.
var sweepScript = redis.NewScript(prelude + `
local p = ARGV[2]
local now = nowms(ARGV[1])
local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', tonumber(ARGV[4]), tonumber(ARGV[3]))
local n, bad = 0, {}
for _, mem in ipairs(m) do
  local hex, sub = string.sub(mem, 1, 64), string.sub(mem, 65)
  local r = redis.call('HMGET', p .. 't:' .. hex, 'id', 'pol', 'c', 'u', 'ttl', 'max')
  if not r[1] then
    -- Redis expired the record already: drop what is left of it.
    redis.call('ZREM', KEYS[1], mem)
    redis.call('ZREM', p .. 's:' .. sub, hex)
    n = n + 1
  elseif (r[2] ~= 'a' and r[2] ~= 's') or not (tonumber(r[3]) and tonumber(r[4]) and tonumber(r[5]) and tonumber(r[6])) then
    -- A damaged record costs only itself: left as it is, and reported.
    bad[#bad + 1] = r[1]
  else
    local d = deadline(r[2], r[3], r[4], r[5], r[6])
    if now < d then
      -- Alive after all (an index entry behind its record): refile it.
      redis.call('ZADD', KEYS[1], int(d), mem)
      redis.call('ZADD', p .. 's:' .. sub, 'XX', int(d), hex)
    else
      drop(p, hex, r[1], sub)
      n = n + 1
    end
  end
end
return {n, #m, int(now), bad}
`)
