package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tokenstore/tokenstore"
)

// forEachBody returns the records of ranks ARGV[2] to ARGV[3] of the
// expiry index, skipping entries whose record Redis has already expired
// or evicted, and records that an eviction left without their ID key or
// subject index entry (they do not validate either). Damaged records are
// returned, for the caller to report, and so are the keys of another
// type met (see try), as messages. KEYS: expiry index.
// ARGV: prefix, start, stop. Read-only. Returns {entries read,
// {record fields}..., {messages}}.
const forEachBody = `
local p = ARGV[1]
local m, bad = try('zset', EXPIRY, 'ZRANGE', KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
if bad then return damaged(bad) end
local out, msgs = {}, {}
for _, mem in ipairs(m) do
  local hex = string.sub(mem, 1, 64)
  local f, bad = try('hash', RECORD, 'HGETALL', p .. 't:' .. hex)
  if bad then
    msgs[#msgs + 1] = bad
  elseif #f > 0 then
    collect(p, hex, f, out, msgs)
  end
end
return {#m, out, msgs}
`

var (
	forEachScript = redis.NewScript("#!lua flags=no-writes\n" + prelude + forEachBody)
	forEachCompat = redis.NewScript(prelude + forEachBody)
)

// forEachChunk is how many index entries one forEachScript reads.
const forEachChunk = 1000

// ForEach calls fn with every token in the store, live or expired but not
// deleted yet, in deadline order (soonest first), as *tokenstore.DB's
// ForEach does for a file (which goes in ID order). It reads the expiry
// index 1,000 entries per round trip, so it is not a snapshot: a token
// issued, slid or revoked while it runs may be seen twice or not at all.
// fn's error stops it and is returned as it is; ctx is checked between
// round trips. A damaged record costs only itself: ForEach goes on with
// the others, then returns an error wrapping [tokenstore.ErrCorrupt] that
// names it.
func (s *Store) ForEach(ctx context.Context, fn func(tokenstore.Info) error) error {
	if err := s.begin(ctx); err != nil {
		return wrap("foreach", err)
	}
	var bad []error // a damaged record costs only itself: reported at the end
	for start := 0; ; start += forEachChunk {
		if err := ctx.Err(); err != nil {
			return wrap("foreach", err)
		}
		res, err := s.read(ctx, forEachScript, forEachCompat, []string{s.expiryKey()}, s.prefix, start, start+forEachChunk-1).Slice()
		if err != nil {
			return wrap("foreach", err)
		}
		if len(res) != 3 {
			return wrap("foreach", errReply)
		}
		seen, err := toInt(res[0])
		recs, ok := res[1].([]any)
		msgs, ok2 := res[2].([]any)
		if err != nil || !ok || !ok2 {
			return wrap("foreach", errors.Join(errReply, err))
		}
		for _, m := range msgs {
			bad = append(bad, misfitErr(fmt.Sprint(m)))
		}
		for _, f := range recs {
			rec, err := decodeRecord(f)
			if err != nil {
				if rec.id != (uuid.UUID{}) {
					err = fmt.Errorf("token %s: %w", rec.id, err)
				}
				bad = append(bad, err)
				continue
			}
			if err := fn(rec.info(rec.lastUsed)); err != nil {
				return err
			}
		}
		if seen < forEachChunk {
			return wrap("foreach", errors.Join(bad...))
		}
	}
}
