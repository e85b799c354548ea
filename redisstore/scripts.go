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

-- sane reports whether a record holds every field the scripts compute
-- with. A damaged one (a manual edit, another program's key under the
-- prefix) is never valid, and costs only itself: the scripts hand it to
-- the caller, whose decoding reports it as corrupt and names it, instead
-- of failing on it, which would fail every pass that meets it.
-- Everything it refuses, decodeRecord refuses too.
local function sane(r)
  local ttl, mx = tonumber(r.ttl), tonumber(r.max)
  -- type(): a field HMGET finds missing is false, not nil.
  return type(r.id) == 'string' and type(r.sub) == 'string' and r.sub ~= '' and
    (r.pol == 'a' or r.pol == 's') and tonumber(r.c) ~= nil and
    tonumber(r.u) ~= nil and ttl ~= nil and ttl >= 1 and mx ~= nil and mx >= 0
end

-- alive reports whether a record's ID key and subject index entry are in
-- place. Eviction can remove either without its record; a token is valid
-- only while every way to revoke it (RevokeID, RevokeSubject) reaches it,
-- so a record without them counts as gone: eviction fails closed.
local function alive(p, hex, r)
  if redis.call('GET', p .. 'i:' .. r.id) ~= hex then return false end
  return redis.call('ZSCORE', p .. 's:' .. r.sub, hex) ~= false
end

-- drop deletes a record and its index entries; a damaged record may lack
-- its id or sub, and loses what it has.
local function drop(p, hex, id, sub)
  redis.call('DEL', p .. 't:' .. hex)
  if id then redis.call('DEL', p .. 'i:' .. id) end
  if sub then
    redis.call('ZREM', p .. 's:' .. sub, hex)
    redis.call('ZREM', p .. 'e', hex .. sub)
  end
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

// readBody reads a token for Validate and Lookup without writing.
// KEYS: record. ARGV: now, prefix.
// Returns {0} (not found), {-1, now} (expired), {-3, 0, record fields}
// (damaged) or {1, now, record fields}.
const readBody = `
local f = redis.call('HGETALL', KEYS[1])
if #f == 0 then return {0} end
local r = fields(f)
if not sane(r) then return {-3, 0, f} end
if not alive(ARGV[2], string.sub(KEYS[1], -64), r) then return {0} end
local now = nowms(ARGV[1])
if now >= deadline(r.pol, r.c, r.u, r.ttl, r.max) then return {-1, int(now)} end
return {1, int(now), f}
`

// readScript is readBody flagged no-writes, for EVALSHA_RO: it runs on a
// replica, and on a primary out of memory. readCompat is the same script
// without the flags, for Redis before 7.0, which has neither.
var (
	readScript = redis.NewScript("#!lua flags=no-writes\n" + prelude + readBody)
	readCompat = redis.NewScript(prelude + readBody)
)

// touchScript answers Validate and writes the use: the token's last use
// becomes now, which slides a sliding token, unless the stored use is
// less than ARGV[4] ms old (another Validate, on any instance, wrote it
// since this one read it: a use is written once per TouchInterval however
// many requests find it due at once). KEYS: record. ARGV: now, prefix,
// grace ms, min age ms. Returns {0} (not found), {-1, now} (expired),
// {-3, 0, record fields} (damaged) or
// {1, now, last use, wrote (0/1), record fields}.
var touchScript = redis.NewScript(prelude + `
local f = redis.call('HGETALL', KEYS[1])
if #f == 0 then return {0} end
local r = fields(f)
if not sane(r) then return {-3, 0, f} end
local p, hex = ARGV[2], string.sub(KEYS[1], -64)
if not alive(p, hex, r) then return {0} end
local now = nowms(ARGV[1])
local u = tonumber(r.u)
local d = deadline(r.pol, r.c, u, r.ttl, r.max)
if now >= d then return {-1, int(now)} end
local wrote = 0
if now > u and now - u >= tonumber(ARGV[4]) then
  u = now
  wrote = 1
  -- The first write: under maxmemory with noeviction it fails with OOM
  -- and the script stops here, having changed nothing.
  redis.call('HSET', KEYS[1], 'u', int(now))
  local nd = deadline(r.pol, r.c, u, r.ttl, r.max)
  if nd ~= d then
    local at = int(nd + tonumber(ARGV[3]))
    redis.call('PEXPIREAT', KEYS[1], at)
    redis.call('PEXPIREAT', p .. 'i:' .. r.id, at)
    redis.call('ZADD', p .. 's:' .. r.sub, 'XX', int(nd), hex)
  end
  -- Not XX: this also re-files a token whose expiry index entry an
  -- eviction removed, so that Sweep, ForEach and Stats see it again.
  redis.call('ZADD', p .. 'e', int(nd), hex .. r.sub)
end
return {1, int(now), int(u), wrote, f}
`)

// issueScript creates a record unless the subject holds limit live tokens.
// KEYS: record, subject index. ARGV: now, prefix, grace ms, limit, id,
// subject, policy kind, ttl ms, max ms, then metadata fields and values.
// Returns {1, now} or {-2, live tokens}.
//
// Index entries of records Redis has expired or evicted are pruned after
// the record is created, not before: Redis refuses a script's writes for
// memory (noeviction at maxmemory) only until its first write, so a
// prune first would let the creation through on a full Redis.
var issueScript = redis.NewScript(prelude + `
local p = ARGV[2]
local now = nowms(ARGV[1])
local limit = tonumber(ARGV[4])
local stale = {}
if limit > 0 then
  local live = 0
  local m = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #m, 2 do
    local f = redis.call('HGETALL', p .. 't:' .. m[i])
    if #f == 0 then
      stale[#stale + 1] = m[i]
    else
      local r = fields(f)
      -- A damaged record is not valid, so not counted; it stays for
      -- Sweep and List to report.
      if sane(r) and alive(p, m[i], r) and now < deadline(r.pol, r.c, r.u, r.ttl, r.max) then
        live = live + 1
      end
    end
  end
  if live >= limit then
    for _, hex in ipairs(stale) do redis.call('ZREM', KEYS[2], hex) end
    return {-2, live}
  end
end
local meta = {}
for i = 10, #ARGV do meta[#meta + 1] = ARGV[i] end
local err = create(p, string.sub(KEYS[1], -64), ARGV[5], ARGV[6], now,
  ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[3]), meta)
if err then return err end
for _, hex in ipairs(stale) do redis.call('ZREM', KEYS[2], hex) end
return {1, int(now)}
`)

// getBody reads the record of an ID. KEYS: ID key. ARGV: now, prefix.
// Returns {0}, {-3, 0, record fields} (damaged) or {1, now, record fields}.
const getBody = `
local hex = redis.call('GET', KEYS[1])
if not hex then return {0} end
local f = redis.call('HGETALL', ARGV[2] .. 't:' .. hex)
if #f == 0 then return {0} end
local r = fields(f)
if not sane(r) then return {-3, 0, f} end
if not alive(ARGV[2], hex, r) then return {0} end
return {1, int(nowms(ARGV[1])), f}
`

var (
	getScript = redis.NewScript("#!lua flags=no-writes\n" + prelude + getBody)
	getCompat = redis.NewScript(prelude + getBody)
)

// listBody returns a subject's valid records, leaving out records whose ID
// key was evicted, and the hashes of index entries whose record Redis has
// expired or evicted, for the caller to prune with pruneScript. Damaged
// records are returned, for the caller to report. KEYS: subject index.
// ARGV: now, prefix. Read-only, so that List works on a replica and while
// Redis holds writes. Returns {now, {record fields}..., {stale hashes}};
// the caller drops expired records.
const listBody = `
local p = ARGV[2]
local now = nowms(ARGV[1])
local m = redis.call('ZRANGE', KEYS[1], 0, -1)
local out, stale = {}, {}
for _, hex in ipairs(m) do
  local f = redis.call('HGETALL', p .. 't:' .. hex)
  if #f == 0 then
    stale[#stale + 1] = hex
  else
    local r = fields(f)
    if not sane(r) or alive(p, hex, r) then out[#out + 1] = f end
  end
end
return {int(now), out, stale}
`

var (
	listScript = redis.NewScript("#!lua flags=no-writes\n" + prelude + listBody)
	listCompat = redis.NewScript(prelude + listBody)
)

// pruneScript drops a subject's index entries whose record is gone.
// KEYS: subject index. ARGV: prefix, then the hashes listBody found stale.
var pruneScript = redis.NewScript(`
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. 't:' .. ARGV[i]) == 0 then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 0
`)

// revokeScript deletes a record, damaged or not. KEYS: record. ARGV:
// prefix. Returns 1, or 0 when there is none.
var revokeScript = redis.NewScript(prelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local r = redis.call('HMGET', KEYS[1], 'id', 'sub')
drop(ARGV[1], string.sub(KEYS[1], -64), r[1], r[2])
return 1
`)

// revokeIDScript deletes the record of an ID. KEYS: ID key. ARGV: prefix.
// Returns 1, or 0 when there is none.
var revokeIDScript = redis.NewScript(prelude + `
local p = ARGV[1]
local hex = redis.call('GET', KEYS[1])
if not hex then return 0 end
if redis.call('EXISTS', p .. 't:' .. hex) == 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
local r = redis.call('HMGET', p .. 't:' .. hex, 'id', 'sub')
redis.call('DEL', KEYS[1]) -- a damaged record may have lost its id
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
  if redis.call('EXISTS', p .. 't:' .. hex) == 1 then
    -- Damaged or not: a damaged record may lack its id.
    drop(p, hex, redis.call('HGET', p .. 't:' .. hex, 'id'), sub)
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
// grace ms, new id. Returns {0}, {-1, now} (expired), {-3, 0, old record
// fields} (damaged) or {1, now, old record fields}.
var rotateScript = redis.NewScript(prelude + `
local p = ARGV[2]
local f = redis.call('HGETALL', KEYS[1])
if #f == 0 then return {0} end
local r = fields(f)
if not sane(r) then return {-3, 0, f} end
if not alive(p, string.sub(KEYS[1], -64), r) then return {0} end
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
  local r = redis.call('HMGET', p .. 't:' .. hex, 'id', 'pol', 'c', 'u', 'ttl', 'max', 'sub')
  if redis.call('EXISTS', p .. 't:' .. hex) == 0 then
    -- Redis expired the record already: drop what is left of it.
    redis.call('ZREM', KEYS[1], mem)
    redis.call('ZREM', p .. 's:' .. sub, hex)
    n = n + 1
  elseif not sane({id = r[1], pol = r[2], c = r[3], u = r[4], ttl = r[5], max = r[6], sub = r[7]}) then
    -- A damaged record costs only itself: left as it is, and reported
    -- by its ID, or, without one, by the start of its key's hash.
    bad[#bad + 1] = r[1] or ('(no id) t:' .. string.sub(hex, 1, 16))
  else
    local d = deadline(r[2], r[3], r[4], r[5], r[6])
    if now < d and alive(p, hex, {id = r[1], sub = sub}) then
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
