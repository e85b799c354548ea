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

-- injected: the now argument came from Options.Now, not Redis's TIME.
local injected = false

local function nowms(a)
  if a ~= '' then
    injected = true
    return tonumber(a)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- expire makes key k expire at at (ms, on the scripts' clock; now is its
-- reading). On Redis's own clock that is PEXPIREAT at. On Options.Now's,
-- which need not agree with Redis's (a test's, one set back, or one
-- before 1970, whose negative times PEXPIREAT and SET PXAT refuse or
-- take as long past), it is at - now ms after the write, on Redis's
-- clock: a key lives as long as the store's clock says, never dropped
-- at once for a clock behind Redis's. With px, k is set to px as a
-- string (SET) with that expiry.
local function expire(k, at, now, px)
  if injected then
    local ms = int(math.max(at - now, 1))
    if px then return redis.call('SET', k, px, 'PX', ms) end
    return redis.call('PEXPIRE', k, ms)
  end
  if px then return redis.call('SET', k, px, 'PXAT', int(at)) end
  return redis.call('PEXPIREAT', k, int(at))
end

-- noGrace is a tombstone's grace end (ge) when it has none, or when a
-- reuse or RevokeFamily ended it for good: not a time. A grace that
-- would end exactly at 0 (1970) ends 1 ms earlier (see graceEnd).
local function graceOpen(ge, now) return ge ~= 0 and now < ge end
local function graceEnd(now, grace)
  local ge = now + grace
  if ge == 0 then ge = -1 end
  return ge
end

-- b is the family's birth (the creation of its first token), absent
-- (nil or false) on a token never rotated: no deadline passes b + the
-- family's cap (the absolute lifetime, or the sliding cap).
local function deadline(pol, c, u, ttl, mx, b)
  c, u, ttl, mx = tonumber(c), tonumber(u), tonumber(ttl), tonumber(mx)
  local d
  if pol == 'a' then
    d = c + ttl
  else
    d = u + ttl
    if mx > 0 and c + mx < d then d = c + mx end
  end
  b = tonumber(b)
  if b then
    local cap = mx
    if pol == 'a' then cap = ttl end
    if cap > 0 and b + cap < d then d = b + cap end
  end
  return d
end

-- rdl is a record's deadline.
local function rdl(r) return deadline(r.pol, r.c, r.u, r.ttl, r.max, r.b) end

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
  -- type(): a field HMGET finds missing is false, not nil. The family
  -- fields (f, b, g) are optional, and numbers where present.
  return type(r.id) == 'string' and type(r.sub) == 'string' and r.sub ~= '' and
    (r.pol == 'a' or r.pol == 's') and tonumber(r.c) ~= nil and
    tonumber(r.u) ~= nil and ttl ~= nil and ttl >= 1 and mx ~= nil and mx >= 0 and
    (not r.b or tonumber(r.b) ~= nil) and (not r.g or tonumber(r.g) ~= nil)
end

-- A key of the store's key space that holds another Redis type than its
-- kind's (damage, or another program's key under the prefix) must not
-- fail every script that meets it with WRONGTYPE: try runs a command on
-- key k and, when k is of another type, returns nil and a message naming
-- the kind of key (what) and the types; any other error is raised. A
-- script answers such a key for the one token or subject it concerns
-- with damaged(msg), which the caller reports as ErrCorrupt; scripts that
-- walk many tokens (List, ForEach, Sweep, the limit in Issue) step over
-- it. Messages name keys by kind, ID or subject, never by a token's hash.
-- typed, under it, runs a command (redis.pcall's arguments) and returns
-- its reply, or nil and true for WRONGTYPE.
local function typed(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    if string.sub(r.err, 1, 9) ~= 'WRONGTYPE' then error(r) end
    return nil, true
  end
  return r
end

local function typeMsg(what, t, want) return what .. ' is a ' .. t .. ', not a ' .. want end

local function try(want, what, cmd, k, ...)
  local r, wrong = typed(cmd, k, ...)
  if wrong then return nil, typeMsg(what, redis.call('TYPE', k).ok, want) end
  return r
end

local function damaged(msg) return redis.error_reply('DAMAGED ' .. msg) end
-- broken is damaged for a key of the right type without the fields the
-- scripts read.
local function broken(msg) return redis.error_reply('BROKEN ' .. msg) end

local RECORD = "the token's record (t:...)"
local IDKEY = "the token's ID key (i:...)"
local function idWhat(id) return "the token's ID key (i:" .. id .. ")" end
local function subWhat(sub) return 'the subject index (s:' .. sub .. ')' end
local EXPIRY = 'the expiry index (e)'
-- A tombstone is named by the start of its hash, as Sweep names a record
-- without an ID: enough to find the key (SCAN MATCH), not the hash that
-- the token's holder presents.
local function tombWhat(hex) return 'the tombstone (r:' .. string.sub(hex, 1, 16) .. '...)' end

-- misfit returns try's message when k exists with another type than
-- want, else nil: a check before a script's first write.
local function misfit(k, want, what)
  local t = redis.call('TYPE', k).ok
  if t ~= 'none' and t ~= want then return typeMsg(what, t, want) end
  return nil
end

-- idx runs an index write (ZADD, ZREM) that a key of another type must
-- not stop: where the index is read, the damage is reported.
local function idx(...) typed(...) end

-- hfield reads a field of a family key (P f:F): false when there is
-- none, and when the key is of another type (another program's key under
-- the prefix), which stands for no token: the tokens it would name fail
-- closed, and it costs only them, never a WRONGTYPE error for every
-- script that meets it. (Not for tombstones: see tomb.)
local function hfield(k, f)
  local v = redis.pcall('HGET', k, f)
  if type(v) ~= 'string' then return false end
  return v
end

-- alive reports whether a record's ID key and subject index entry, and a
-- rotated token's family key, are in place. Eviction can remove any of
-- them without its record; a token is valid only while every way to
-- revoke it (RevokeID, RevokeSubject, RevokeFamily and reuse) reaches it,
-- so a record without them counts as gone: eviction fails closed.
-- A second result names an ID key or subject index of another type.
local function alive(p, hex, r)
  local v, bad = try('string', idWhat(r.id), 'GET', p .. 'i:' .. r.id)
  if bad then return false, bad end
  if v ~= hex then return false end
  v, bad = try('zset', subWhat(r.sub), 'ZSCORE', p .. 's:' .. r.sub, hex)
  if bad then return false, bad end
  if v == false then return false end
  if r.f then return hfield(p .. 'f:' .. r.f, 'h') == hex end
  return true
end

-- collect adds f, the fields of hex's record, to out for a caller that
-- reports every record (List, ForEach): a damaged record too, for the
-- caller to report, but not one whose keys are gone (see alive); an ID key
-- or subject index of another type adds a message to msgs instead.
local function collect(p, hex, f, out, msgs)
  local r = fields(f)
  local ok, why = true, nil
  if sane(r) then ok, why = alive(p, hex, r) end
  if why then msgs[#msgs + 1] = 'token ' .. r.id .. ': ' .. why
  elseif ok then out[#out + 1] = f end
end

-- drop deletes a record and its index entries, and its family's key when
-- it is the family's live token (fam: its f field, absent on a token never
-- rotated); a damaged record may lack its id or sub, and loses what it has.
local function drop(p, hex, id, sub, fam)
  redis.call('DEL', p .. 't:' .. hex)
  if id then redis.call('DEL', p .. 'i:' .. id) end
  if sub then
    idx('ZREM', p .. 's:' .. sub, hex)
    idx('ZREM', p .. 'e', hex .. sub)
  end
  if fam and hfield(p .. 'f:' .. fam, 'h') == hex then
    redis.call('DEL', p .. 'f:' .. fam)
  end
end

-- create writes a record (meta: flat list of fields and values: 'm:'
-- metadata, and a successor's family fields) and its index entries; its
-- keys expire keep ms (Options.KeepExpired) after its deadline, which born (the family's birth,
-- or nil) caps. Returns an error reply, or nil, the deadline and the keys'
-- expiry.
local function create(p, hex, id, sub, now, pol, ttl, mx, keep, meta, born)
  local rk = p .. 't:' .. hex
  if redis.call('EXISTS', rk) == 1 then
    return redis.error_reply('token hash collision')
  end
  local d = deadline(pol, now, now, ttl, mx, born)
  local at = int(d + keep)
  redis.call('HSET', rk, 'id', id, 'sub', sub, 'c', int(now), 'u', int(now),
    'pol', pol, 'ttl', ttl, 'max', mx, unpack(meta))
  expire(rk, at, now)
  expire(p .. 'i:' .. id, at, now, hex)
  redis.call('ZADD', p .. 's:' .. sub, int(d), hex)
  redis.call('ZADD', p .. 'e', int(d), hex .. sub)
  return nil, d, at
end

-- tomb tells what a token without a record is, from its tombstone (P r:H,
-- written by Rotate: fam, next (the successor's hash), ge (the grace's
-- end, 0 for none), d (the old token's deadline), and, with a grace, the
-- old record's fields):
--   'gone'      no tombstone, or past its deadline: an unknown token;
--   'grace', tombstone fields, successor fields: within the grace, the
--               successor live and never used;
--   'expired'   within the grace, the successor expired;
--   'succgone'  within the grace, the successor revoked (not by reuse);
--   'reuse', tombstone: presented after its grace, or after the
--               successor's first use (its g field gone, or rotated);
--   'damaged', error reply: the tombstone of another type, or without
--               the fields read here; within the grace, a key of the
--               successor of another type (see try).
-- A damaged tombstone is not taken for none: that would make a replay of
-- the token it stands for ErrNotFound, not a reuse, and leave its family
-- live. Its token's family is unknown, so it cannot be revoked either:
-- every call on the token answers ErrCorrupt, naming the tombstone by the
-- start of its hash (the key an operator deletes), until it is deleted
-- or expires.
local function tomb(p, hex, now)
  local what = tombWhat(hex)
  local tf, bad = try('hash', what, 'HGETALL', p .. 'r:' .. hex)
  if bad then return 'damaged', damaged(bad) end
  if #tf == 0 then return 'gone' end
  local t = fields(tf)
  local d, ge = tonumber(t.d), tonumber(t.ge)
  if not d or not ge or type(t.fam) ~= 'string' or type(t.next) ~= 'string' then
    return 'damaged', broken(what .. ' lacks a field (fam, next, ge, d) or holds one that is not a number')
  end
  if now >= d then return 'gone' end
  if graceOpen(ge, now) then
    local bf
    bf, bad = try('hash', RECORD, 'HGETALL', p .. 't:' .. t.next)
    if bad then return 'damaged', damaged('its successor: ' .. bad) end
    if #bf > 0 then
      local b = fields(bf)
      if not sane(b) then return 'succgone' end
      local ok, why = alive(p, t.next, b)
      if why then return 'damaged', damaged('its successor: ' .. why) end
      if not ok then return 'succgone' end
      if b.g then
        if now >= rdl(b) then return 'expired' end
        return 'grace', tf, bf
      end
      return 'reuse', t
    end
    -- The successor left its record for a tombstone: rotated, so used.
    -- A key of another type there counts too: this token's own
    -- tombstone is whole, so its family is known and is revoked, rather
    -- than left live for damage to the successor's.
    if redis.call('EXISTS', p .. 'r:' .. t.next) == 1 then return 'reuse', t end
    return 'succgone'
  end
  return 'reuse', t
end

-- revokeFamily deletes the live token of family fam (the head its family
-- key P f:F names, or its first token, never rotated, by its ID key) and
-- ends the grace of a rotated-away token of it (g); returns how many
-- tokens it deleted.
local function revokeFamily(p, fam)
  local n = 0
  local fk = p .. 'f:' .. fam
  local h = hfield(fk, 'h')
  local g = hfield(fk, 'g')
  if h and redis.call('EXISTS', p .. 't:' .. h) == 1 then
    -- A record of another type is deleted, as a damaged one is.
    local r = try('hash', RECORD, 'HMGET', p .. 't:' .. h, 'id', 'sub') or {}
    drop(p, h, r[1], r[2], nil)
    n = n + 1
  end
  -- The family key goes before the grace ends (HSET): a write first,
  -- which a full Redis allows, and after it Redis lets the script
  -- finish, so a revocation is never refused for memory.
  redis.call('DEL', fk)
  if g and redis.call('TYPE', p .. 'r:' .. g).ok == 'hash' then
    redis.call('HSET', p .. 'r:' .. g, 'ge', '0')
  end
  local hex = redis.pcall('GET', p .. 'i:' .. fam)
  if type(hex) == 'string' and hex ~= h and redis.call('EXISTS', p .. 't:' .. hex) == 1 then
    local r = try('hash', RECORD, 'HMGET', p .. 't:' .. hex, 'id', 'sub', 'f') or {}
    if r[1] == fam and (not r[3] or r[3] == fam) then
      drop(p, hex, r[1], r[2], r[3])
      n = n + 1
    end
  end
  return n
end

-- reused revokes the family of hex, a rotated-away token presented after
-- its grace (t: its tombstone's fields), and ends that grace for good
-- (ge 0), after revokeFamily's first write: a grace ended by time would
-- reopen under a clock set back, and a reuse must not be undone so.
-- Returns the reply {-4, revoked, family}.
local function reused(p, hex, t)
  local n = revokeFamily(p, t.fam)
  if tonumber(t.ge) ~= 0 then redis.call('HSET', p .. 'r:' .. hex, 'ge', '0') end
  return {-4, n, t.fam}
end

-- untracked answers for a token that has no record, in a script that may
-- write: a reuse revokes the family here. Returns the reply.
local function untracked(p, hex, now, known)
  local st, a = tomb(p, hex, now)
  -- known: this instance found the token reused before and could not
  -- revoke its family then (a replica); a clock set back since does not
  -- make it valid again.
  if st == 'grace' and known then return reused(p, hex, fields(a)) end
  if st == 'grace' then return {2, int(now), a} end
  if st == 'expired' then return {-1, int(now)} end
  if st == 'reuse' then return reused(p, hex, a) end
  if st == 'damaged' then return a end
  return {0}
end
`

// readBody reads a token for Validate and Lookup without writing.
// KEYS: record. ARGV: now, prefix.
// Returns {0} (not found), {-1, now} (expired), {-3, 0, record fields}
// (damaged), {1, now, record fields}, and for a rotated-away token
// {2, now, tombstone fields} (within its grace) or {-4, 0, family}
// (reused: the caller runs reuseScript, which revokes the family).
const readBody = `
local f, bad = try('hash', RECORD, 'HGETALL', KEYS[1])
if bad then return damaged(bad) end
if #f == 0 then
  -- Rotated away? Reuse needs a write (reuseScript); the grace does not.
  local now = nowms(ARGV[1])
  local st, a = tomb(ARGV[2], string.sub(KEYS[1], -64), now)
  if st == 'grace' then return {2, int(now), a} end
  if st == 'expired' then return {-1, int(now)} end
  if st == 'reuse' then return {-4, 0, a.fam} end
  if st == 'damaged' then return a end
  return {0}
end
local r = fields(f)
if not sane(r) then return {-3, 0, f} end
local ok, why = alive(ARGV[2], string.sub(KEYS[1], -64), r)
if why then return damaged(why) end
if not ok then return {0} end
local now = nowms(ARGV[1])
if now >= rdl(r) then return {-1, int(now)} end
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
// keep ms (KeepExpired), min age ms. Returns {0} (not found), {-1, now} (expired),
// {-3, 0, record fields} (damaged) or
// {1, now, last use, wrote (0/1), record fields}; for a rotated-away
// token what untracked says (a reuse revokes the family here:
// {-4, revoked, family}). A successor's first use deletes its g field,
// which ends its predecessor's grace, whatever the min age.
var touchScript = redis.NewScript(prelude + `
local p, hex = ARGV[2], string.sub(KEYS[1], -64)
local f, bad = try('hash', RECORD, 'HGETALL', KEYS[1])
if bad then return damaged(bad) end
if #f == 0 then return untracked(p, hex, nowms(ARGV[1])) end
local r = fields(f)
if not sane(r) then return {-3, 0, f} end
local ok, why = alive(p, hex, r)
if why then return damaged(why) end
if not ok then return {0} end
local now = nowms(ARGV[1])
local u = tonumber(r.u)
local d = deadline(r.pol, r.c, u, r.ttl, r.max, r.b)
if now >= d then return {-1, int(now)} end
local wrote = 0
if r.g then
  -- First, as the script's first write: deleting is not refused for
  -- memory, and once a script has written, Redis lets it finish, so a
  -- full Redis (noeviction) still ends the grace (and writes the use).
  redis.call('HDEL', KEYS[1], 'g')
  wrote = 1
end
if now > u and now - u >= tonumber(ARGV[4]) then
  u = now
  wrote = 1
  -- The first write, but for a grace's end: under maxmemory with
  -- noeviction it fails with OOM and the script stops here, having
  -- changed nothing.
  redis.call('HSET', KEYS[1], 'u', int(now))
  local nd = deadline(r.pol, r.c, u, r.ttl, r.max, r.b)
  if nd ~= d then
    local at = int(nd + tonumber(ARGV[3]))
    expire(KEYS[1], at, now)
    expire(p .. 'i:' .. r.id, at, now)
    if r.f then expire(p .. 'f:' .. r.f, at, now) end
    redis.call('ZADD', p .. 's:' .. r.sub, 'XX', int(nd), hex)
  end
  -- Not XX: this also re-files a token whose expiry index entry an
  -- eviction removed, so that Sweep, ForEach and Stats see it again.
  -- An expiry index of another type is Sweep's and ForEach's to report.
  idx('ZADD', p .. 'e', int(nd), hex .. r.sub)
end
return {1, int(now), int(u), wrote, f}
`)

// reuseScript revokes the family of a rotated-away token presented after
// its grace, having checked again that it is one (readBody found it so
// without writing). KEYS: record. ARGV: now, prefix, known ('1': the
// caller found it reused before and could not revoke its family then,
// so it is a reuse even within its grace by the clock, set back since).
// Returns what untracked says: {-4, revoked, family} for a reuse.
var reuseScript = redis.NewScript(prelude + `
local p, hex = ARGV[2], string.sub(KEYS[1], -64)
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
return untracked(p, hex, nowms(ARGV[1]), ARGV[3] == '1')
`)

// firstUseScript records a Lookup of a successor whose predecessor is in
// its grace: the grace ends at the successor's first use of any kind.
// KEYS: record. Returns 1 when it ended one.
var firstUseScript = redis.NewScript(prelude + `
local g, bad = try('hash', RECORD, 'HEXISTS', KEYS[1], 'g')
if bad then return damaged(bad) end
if g == 0 then return 0 end
redis.call('HDEL', KEYS[1], 'g')
return 1
`)

// issueScript creates a record unless the subject holds limit live tokens.
// KEYS: record, subject index. ARGV: now, prefix, keep ms, limit, id,
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
-- Before any write: a token no index could reach is not made.
local bad = misfit(KEYS[2], 'zset', subWhat(ARGV[6])) or misfit(p .. 'e', 'zset', EXPIRY)
if bad then return damaged(bad) end
if limit > 0 then
  local live = 0
  local m = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #m, 2 do
    local f = try('hash', RECORD, 'HGETALL', p .. 't:' .. m[i]) or {'!', '!'}
    if #f == 0 then
      stale[#stale + 1] = m[i]
    else
      local r = fields(f)
      -- A damaged record (or a key of another type) is not valid, so
      -- not counted; it stays for Sweep and List to report.
      if sane(r) and alive(p, m[i], r) and now < rdl(r) then
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
  ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[3]), meta, nil)
if err then return err end
for _, hex in ipairs(stale) do redis.call('ZREM', KEYS[2], hex) end
return {1, int(now)}
`)

// getBody reads the record of an ID. KEYS: ID key. ARGV: now, prefix.
// Returns {0}, {-3, 0, record fields} (damaged) or {1, now, record fields}.
const getBody = `
local hex, bad = try('string', IDKEY, 'GET', KEYS[1])
if bad then return damaged(bad) end
if not hex then return {0} end
local f
f, bad = try('hash', RECORD, 'HGETALL', ARGV[2] .. 't:' .. hex)
if bad then return damaged(bad) end
if #f == 0 then return {0} end
local r = fields(f)
if not sane(r) then return {-3, 0, f} end
local ok, why = alive(ARGV[2], hex, r)
if why then return damaged(why) end
if not ok then return {0} end
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
// ARGV: now, prefix, subject. Read-only, so that List works on a replica
// and while Redis holds writes. Returns {now, {record fields}...,
// {stale hashes}, {messages}}, a message for each key of another type
// met (see try); the caller drops expired records.
const listBody = `
local p = ARGV[2]
local now = nowms(ARGV[1])
local m, bad = try('zset', subWhat(ARGV[3]), 'ZRANGE', KEYS[1], 0, -1)
if bad then return damaged(bad) end
local out, stale, msgs = {}, {}, {}
for _, hex in ipairs(m) do
  local f, bad = try('hash', RECORD, 'HGETALL', p .. 't:' .. hex)
  if bad then
    msgs[#msgs + 1] = bad
  elseif #f == 0 then
    stale[#stale + 1] = hex
  else
    collect(p, hex, f, out, msgs)
  end
end
return {int(now), out, stale, msgs}
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

// revokeScript deletes a record, damaged or not. A token rotated away
// and within its grace has none, but still works: it is revoked as any
// token is, so its tombstone goes (it is then no token at all, not a
// reuse: a retried logout is not taken for a theft), and so does its
// successor, unused (or the grace would be over) and so held by no one
// but this token's holder. Only deletes, which a full Redis (noeviction)
// allows. KEYS: record. ARGV: prefix, now. Returns 1, or 0 when there is
// none.
var revokeScript = redis.NewScript(prelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  local p, hex = ARGV[1], string.sub(KEYS[1], -64)
  local st, a = tomb(p, hex, nowms(ARGV[2]))
  if st == 'damaged' then return a end
  if st ~= 'grace' then return 0 end
  local t = fields(a)
  local r = redis.call('HMGET', p .. 't:' .. t.next, 'id', 'sub', 'f')
  drop(p, t.next, r[1], r[2], r[3])
  redis.call('DEL', p .. 'r:' .. hex)
  -- The family key names this token as the one in its grace (the
  -- successor's own family key, dropped above, or, rotated into a new
  -- family, the old family's): it is no longer, so RevokeFamily does
  -- not look for it.
  local fk = p .. 'f:' .. t.fam
  if hfield(fk, 'g') == hex then redis.call('HDEL', fk, 'g') end
  return 1
end
-- A record of another type is deleted, as a damaged one is.
local r = try('hash', RECORD, 'HMGET', KEYS[1], 'id', 'sub', 'f') or {}
drop(ARGV[1], string.sub(KEYS[1], -64), r[1], r[2], r[3])
return 1
`)

// revokeIDScript deletes the record of an ID. KEYS: ID key. ARGV: prefix.
// Returns 1, or 0 when there is none.
var revokeIDScript = redis.NewScript(prelude + `
local p = ARGV[1]
local hex, bad = try('string', IDKEY, 'GET', KEYS[1])
if bad then return damaged(bad) end
if not hex then return 0 end
if redis.call('EXISTS', p .. 't:' .. hex) == 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
local r = try('hash', RECORD, 'HMGET', p .. 't:' .. hex, 'id', 'sub', 'f') or {}
redis.call('DEL', KEYS[1]) -- a damaged record may have lost its id
drop(p, hex, r[1], r[2], r[3])
return 1
`)

// revokeSubjectScript deletes up to ARGV[3] of a subject's records, expired
// or not. KEYS: subject index. ARGV: prefix, subject, chunk.
// Returns {deleted, entries left in the index}.
var revokeSubjectScript = redis.NewScript(prelude + `
local p, sub = ARGV[1], ARGV[2]
local m, bad = try('zset', subWhat(sub), 'ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
if bad then return damaged(bad) end
local n = 0
for _, hex in ipairs(m) do
  if redis.call('EXISTS', p .. 't:' .. hex) == 1 then
    -- Damaged or not (a key of another type too): a damaged record may
    -- lack its id.
    local r = try('hash', RECORD, 'HMGET', p .. 't:' .. hex, 'id', 'f') or {}
    drop(p, hex, r[1], sub, r[2])
    n = n + 1
  else
    redis.call('ZREM', KEYS[1], hex)
    idx('ZREM', p .. 'e', hex .. sub)
  end
end
return {n, redis.call('ZCARD', KEYS[1])}
`)

// rotateScript replaces a live record by its successor, with its subject,
// policy, metadata and family, and leaves a tombstone of it (see tomb)
// until its deadline. KEYS: old record, new record. ARGV: now, prefix,
// keep ms (KeepExpired), new id, grace ms (WithGrace), new family (1/0).
//
// The family key P f:F (F: the family's ID) names the family's live
// token (h) and the rotated-away token in its grace (g), for
// revokeFamily; it expires with its live token's keys. A successor's
// record holds f (the family), b (its birth, which caps every deadline)
// and, while its predecessor's grace lasts and it is unused, g.
//
// Returns {0}, {-1, now} (expired), {-3, 0, old record fields} (damaged),
// {1, now, new record fields}, or for a rotated-away token
// {3, now, successor fields, successor hash} (within the grace: the same
// successor again) or {-4, revoked, family} (reused: family revoked).
//
// With a grace, KEYS[3] is the rotation key and ARGV[7] the SHA-1 of the
// one the successor was derived with: a successor is made only with the
// key Redis holds, so that every instance can derive it again. {-5}: the
// key is gone or another (deleted, evicted, made again by another
// instance); the caller reads it again and retries.
var rotateScript = redis.NewScript(prelude + `
local p = ARGV[2]
local hexA, hexB = string.sub(KEYS[1], -64), string.sub(KEYS[2], -64)
local now = nowms(ARGV[1])
local f, bad = try('hash', RECORD, 'HGETALL', KEYS[1])
if bad then return damaged(bad) end
if #f > 0 and ARGV[7] ~= '' then
  local k = redis.pcall('GET', KEYS[3])
  if type(k) ~= 'string' or redis.sha1hex(k) ~= ARGV[7] then return {-5} end
end
if #f == 0 then
  local st, a, b = tomb(p, hexA, now)
  if st == 'grace' then return {3, int(now), b, fields(a).next} end
  if st == 'expired' then return {-1, int(now)} end
  if st == 'reuse' then return reused(p, hexA, a) end
  if st == 'damaged' then return a end
  return {0}
end
local r = fields(f)
if not sane(r) then return {-3, 0, f} end
local ok, why = alive(p, hexA, r)
if why then return damaged(why) end
if not ok then return {0} end
local d = rdl(r)
if now >= d then return {-1, int(now)} end
-- Before any write: a successor no index could reach is not made.
bad = misfit(p .. 'e', 'zset', EXPIRY)
if bad then return damaged(bad) end
local grace = tonumber(ARGV[5])
local fam, born = r.f or r.id, r.b or r.c
local nfam, nborn = fam, born
if ARGV[6] == '1' then nfam, nborn = ARGV[4], int(now) end
local meta = {}
for i = 1, #f, 2 do
  if string.sub(f[i], 1, 2) == 'm:' then
    meta[#meta + 1] = f[i]
    meta[#meta + 1] = f[i + 1]
  end
end
local ge = 0
meta[#meta + 1] = 'f'
meta[#meta + 1] = nfam
meta[#meta + 1] = 'b'
meta[#meta + 1] = nborn
if grace > 0 then
  ge = graceEnd(now, grace)
  meta[#meta + 1] = 'g'
  meta[#meta + 1] = int(ge)
end
local err, _, at = create(p, hexB, ARGV[4], r.sub, now, r.pol, r.ttl, r.max,
  tonumber(ARGV[3]), meta, nborn)
if err then return err end
local fk = p .. 'f:' .. nfam
-- After create, whose first write is the one a full Redis refuses.
-- A family key of another type (another program's) named no token
-- (alive refuses it): the name is the store's, and it is replaced.
if redis.call('TYPE', fk).ok ~= 'hash' then redis.call('DEL', fk) end
redis.call('HSET', fk, 'h', hexB)
if grace > 0 and nfam == fam then
  redis.call('HSET', fk, 'g', hexA)
else
  redis.call('HDEL', fk, 'g')
end
expire(fk, at, now)
if nfam ~= fam then
  -- The old family keeps only the rotated-away token's grace, as long
  -- as its tombstone: RevokeFamily of it ends that grace for good, also
  -- after its end by the clock, which may be set back into it.
  local ok = p .. 'f:' .. fam
  if redis.call('TYPE', ok).ok ~= 'hash' then redis.call('DEL', ok) end
  if grace > 0 then
    redis.call('HDEL', ok, 'h')
    redis.call('HSET', ok, 'g', hexA)
    expire(ok, d, now)
  else
    redis.call('DEL', ok)
  end
end
local tk = p .. 'r:' .. hexA
local t = {'fam', fam, 'next', hexB, 'ge', int(ge), 'd', int(d)}
if grace > 0 then
  -- Within the grace the old token answers with its own Info.
  for i = 1, #f do t[#t + 1] = f[i] end
end
redis.call('DEL', tk)
redis.call('HSET', tk, unpack(t))
expire(tk, d, now)
drop(p, hexA, r.id, r.sub, nil)
return {1, int(now), redis.call('HGETALL', KEYS[2])}
`)

// revokeFamilyScript deletes the live tokens of a family. KEYS: family
// key, the family's ID key. ARGV: prefix, family ID. Returns how many.
var revokeFamilyScript = redis.NewScript(prelude + `
return revokeFamily(ARGV[1], ARGV[2])
`)

// rotationKeyScript returns the store's rotation key, creating it when
// there is none. KEYS: rotation key. ARGV: a new random key.
var rotationKeyScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`)

// sweepScript deletes up to ARGV[3] tokens whose deadline has passed,
// after the first ARGV[4] due entries (damaged records met earlier in the
// pass, which stay at the front of the due range).
// KEYS: expiry index. ARGV: now, prefix, chunk, skip.
// Returns {deleted, index entries looked at, now, ids of damaged records}.
var sweepScript = redis.NewScript(prelude + `
local p = ARGV[2]
local now = nowms(ARGV[1])
local m, wrong = try('zset', EXPIRY, 'ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', tonumber(ARGV[4]), tonumber(ARGV[3]))
if wrong then return damaged(wrong) end
local n, bad = 0, {}
for _, mem in ipairs(m) do
  local hex, sub = string.sub(mem, 1, 64), string.sub(mem, 65)
  local r, why = try('hash', RECORD, 'HMGET', p .. 't:' .. hex, 'id', 'pol', 'c', 'u', 'ttl', 'max', 'sub', 'b', 'f')
  if why then
    -- A key of another type costs only itself, as a damaged record.
    bad[#bad + 1] = '(no id) t:' .. string.sub(hex, 1, 16) .. ': ' .. why
  elseif redis.call('EXISTS', p .. 't:' .. hex) == 0 then
    -- Redis expired the record already: drop what is left of it.
    redis.call('ZREM', KEYS[1], mem)
    idx('ZREM', p .. 's:' .. sub, hex)
    n = n + 1
  elseif not sane({id = r[1], pol = r[2], c = r[3], u = r[4], ttl = r[5], max = r[6], sub = r[7], b = r[8]}) then
    -- A damaged record costs only itself: left as it is, and reported
    -- by its ID, or, without one, by the start of its key's hash.
    bad[#bad + 1] = r[1] or ('(no id) t:' .. string.sub(hex, 1, 16))
  else
    local d = deadline(r[2], r[3], r[4], r[5], r[6], r[8])
    local ok, why = false, nil
    if now < d then ok, why = alive(p, hex, {id = r[1], sub = sub, f = r[9]}) end
    if why then
      bad[#bad + 1] = r[1] .. ': ' .. why
    elseif ok then
      -- Alive after all (an index entry behind its record): refile it.
      redis.call('ZADD', KEYS[1], int(d), mem)
      idx('ZADD', p .. 's:' .. sub, 'XX', int(d), hex)
    else
      drop(p, hex, r[1], sub, r[9])
      n = n + 1
    end
  end
end
return {n, #m, int(now), bad}
`)
