package tokenstore

import (
	"context"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Validate that reads the clock just before a Sliding token's deadline
// and notes its use only after the sweep read that token's last use is
// the race these tests replay. The sweep's hooks (betweenTx on its log
// lines) run the Validate at the two places it can land, with the shared
// clock set back to the Validate's earlier read, which is what a Validate
// descheduled between its clock read and its use note sees:
//
//   - after the scan, before the sweep marks its tokens (the "sweep scan"
//     line): the use came first, so the token must survive the sweep;
//   - after the mark (the first "sweep transaction" line): the sweep's
//     decision came first, so the Validate must be refused and the token
//     goes.

// sweepRaceDB opens a store on a settable clock at t0 whose logger runs
// h's fn, with one token per sweep transaction so that the hooks fall
// between the passes.
func sweepRaceDB(t *testing.T, h *betweenTx) (*DB, func(time.Duration)) {
	t.Helper()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock := settableClock(t0)
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: clock, Logger: slog.New(h)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	db.sweepSize.setAll(chunkSizer{first: 1, lo: 1, hi: 1})
	return db, func(d time.Duration) { now.Store(t0.Add(d).UnixMilli()) }
}

// issueSliding issues n tokens to "u", each Sliding for an hour from the
// clock's t0, one Issue each: it returns them with their ids.
func issueSliding(t *testing.T, db *DB, n int) (toks []string, ids []uuid.UUID) {
	t.Helper()
	for range n {
		tok, info, err := db.Issue(t.Context(), "u", WithPolicy(Sliding(time.Hour, 0)))
		require.NoError(t, err)
		toks, ids = append(toks, tok), append(ids, info.ID)
	}
	return toks, ids
}

// (a) The use first: Validates at 59 min (one of a token already cached,
// one of a token not cached, read from the file) land after the scan has
// judged both expired at 70 min, and before the sweep marks them. They
// answered valid, so the sweep keeps both, re-filed under the deadline
// their use gives (119 min); the token nobody used goes.
func TestDB_Sweep_UseBeforeMarkKeepsToken(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep scan"}
	db, at := sweepRaceDB(t, h)
	toks, _ := issueSliding(t, db, 3)
	cached, uncached, idle := toks[0], toks[1], toks[2]
	_, err := db.Validate(ctx, cached) // at 0: cached, deadline 60 min
	require.NoError(t, err)

	at(70 * time.Minute) // the sweep's clock: all three are past their deadline
	h.fn = func(int) {
		at(59 * time.Minute) // the Validates read the clock before the sweep did
		for _, tok := range []string{cached, uncached} {
			info, err := db.Validate(ctx, tok)
			require.NoError(t, err, "before its deadline, before the sweep's decision")
			assert.Equal(t, 119*time.Minute, info.ExpiresAt.Sub(info.CreatedAt))
		}
		at(70 * time.Minute)
	}
	n, err := db.Sweep(ctx)
	h.fn = nil
	require.NoError(t, err)
	assert.Equal(t, 1, h.n, "the hook ran once")
	assert.Equal(t, 1, n, "only the token nobody used")

	for _, tok := range []string{cached, uncached} {
		info, err := db.Validate(ctx, tok)
		require.NoError(t, err, "answered valid before the sweep decided: kept")
		assert.Equal(t, 130*time.Minute, info.ExpiresAt.Sub(info.CreatedAt), "slid again at 70 min")
	}
	_, err = db.Validate(ctx, idle)
	require.ErrorIs(t, err, ErrNotFound)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)

	// Re-filed, not left due: the next sweep at 125 min (past the 119
	// min of the racing use, before the 130 min of the later one) finds
	// them alive and deletes nothing; at 131 min both go.
	require.NoError(t, db.Flush(ctx))
	at(125 * time.Minute)
	n, err = db.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	at(131 * time.Minute)
	n, err = db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}

// (b) The sweep's decision first: after the sweep has marked its tokens
// (between its transactions), a Validate, a Lookup and a Rotate whose
// clock reads 59 min, before the tokens' 60 min deadline, are refused as
// expired, as they would be had they read the clock after the sweep did:
// answered valid, the token was deleted a moment later all the same (or,
// rotated, gave a successor to a token the store had just answered
// expired). The tokens go, and nothing of the refused calls stays.
func TestDB_Sweep_UseAfterMarkIsRefused(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep transaction"}
	db, at := sweepRaceDB(t, h)
	toks, _ := issueSliding(t, db, 3)
	_, err := db.Validate(ctx, toks[0]) // cached
	require.NoError(t, err)

	at(70 * time.Minute)
	h.fn = func(n int) {
		if n != 1 { // after the first transaction of the subjects pass
			return
		}
		at(59 * time.Minute)
		defer at(70 * time.Minute)
		for i, tok := range toks[:2] {
			_, err := db.Validate(ctx, tok)
			require.ErrorIs(t, err, ErrExpired, "token %d: the sweep decided first", i)
			_, err = db.Lookup(ctx, tok)
			require.ErrorIs(t, err, ErrExpired, "token %d", i)
		}
		_, _, err := db.Rotate(ctx, toks[2], WithGrace(time.Minute))
		require.ErrorIs(t, err, ErrExpired, "a Rotate of a token the sweep decided to delete")
	}
	n, err := db.Sweep(ctx)
	h.fn = nil
	require.NoError(t, err)
	assert.Greater(t, h.n, 1)
	assert.Equal(t, 3, n)
	for i, tok := range toks {
		_, err := db.Validate(ctx, tok)
		require.ErrorIs(t, err, ErrNotFound, "token %d", i)
	}
	assert.Zero(t, db.Stats().Tokens)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// A token a cut sweep began deleting (its subjects entry gone) is
// finished by the next sweep whatever a use noted meanwhile: re-filed, it
// would live on without its subjects entry, missed by List and
// RevokeSubject, and Check would report it. Here the cut sweep ran at 2 h
// and deleted the subjects entries; the clock then steps back to 70 min,
// where the tokens are still expired (60 min) and the racing Validates'
// use at 59 min would keep them alive.
func TestDB_Sweep_UseBeforeMarkOfCutSweepToken(t *testing.T) {
	ctx := context.Background()
	f, db, issued := issuedFile(t, Sliding(time.Hour, 0))
	require.NoError(t, db.Close())

	f.at(2 * time.Hour)
	cutSweep(t, f.path, f.clock, 2) // the subjects pass: 2 transactions of 4

	f.at(70 * time.Minute)
	h := &betweenTx{msg: "tokenstore: sweep scan"}
	db, err := Open(f.path, &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: f.clock, Logger: slog.New(h)})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	h.fn = func(int) {
		f.at(59 * time.Minute)
		for _, is := range issued {
			_, err := db.Validate(ctx, is.Token) // its record is still there
			require.NoError(t, err)
		}
		f.at(70 * time.Minute)
	}
	n, err := db.Sweep(ctx)
	h.fn = nil
	require.NoError(t, err)
	assert.Equal(t, 1, h.n)
	assert.Equal(t, 8, n)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	for i, is := range issued {
		_, err := db.Validate(ctx, is.Token)
		require.ErrorIs(t, err, ErrNotFound, "token %d", i)
	}
	assert.Zero(t, db.Stats().Tokens)
}

// The sweep's mark at the cache: beginSweepAll leaves out (and returns)
// a token whose in-memory use keeps it alive past the sweep's clock; a
// token it marked is answered expired at any clock and notes no use,
// cached or not; a Revoke's mark on the same token is read from the file
// as before, and outlives the end of the sweep's.
func TestCache_BeginSweepAll(t *testing.T) {
	const hour = int64(time.Hour / time.Millisecond)
	c := newCache(1024)
	used, idle, cold, revoked := Hash{1}, Hash{2}, Hash{3}, Hash{4}
	read := func(reads *int) func() (record, error) {
		return func() (record, error) { *reads++; return testRecord(1000), nil }
	}
	var reads int
	_, err := c.lookup(used, 5000, true, read(&reads)) // alive to 5000+hour
	require.NoError(t, err)
	for _, h := range []Hash{idle, revoked} {
		_, err := c.lookup(h, 1000, false, read(&reads)) // cached, alive to 1000+hour
		require.NoError(t, err)
	}
	now := 2000 + hour // the sweep's clock: idle, cold and revoked are expired

	alive := c.beginSweepAll([]Hash{used, idle, cold}, now)
	assert.Equal(t, []sweptAlive{{used, 5000, 5000 + hour}}, alive, "alive by its use: left out")
	r, err := c.lookup(used, 6000, true, read(&reads))
	require.NoError(t, err)
	assert.True(t, r.hit && !r.expired, "not marked")

	for _, h := range []Hash{idle, cold} {
		reads = 0
		r, err := c.lookup(h, 1500, true, read(&reads)) // a clock read before the deadline
		require.NoError(t, err)
		assert.True(t, r.expired, "%x: marked by the sweep", h[0])
		assert.Equal(t, 1, reads, "read from the file: gone or not")
		_, noted := c.pending(h)
		assert.False(t, noted, "no use noted")
	}
	assert.Equal(t, int64(1000), c.used(idle), "no use noted")
	assert.Equal(t, int64(math.MinInt64), c.used(cold), "nothing cached")

	c.beginDelete(revoked) // a Revoke in flight
	r, err = c.lookup(revoked, 1500, true, read(&reads))
	require.NoError(t, err)
	assert.False(t, r.expired, "a Revoke's mark: the file decides")
	c.beginDelete(idle) // a Revoke of a token the sweep also marked
	c.endDeleteAll([]Hash{idle, cold}, false)
	r, err = c.lookup(idle, 1500, false, read(&reads))
	require.NoError(t, err)
	assert.False(t, r.expired, "the sweep's mark ended, the Revoke's did not")
	assert.False(t, r.hit, "read from the file while the Revoke is in flight")
	c.endDelete(idle, false)
	c.endDelete(revoked, false)
	for _, h := range []Hash{idle, revoked} {
		s := c.shard(h)
		s.mu.Lock()
		n := s.deleting[h]
		s.mu.Unlock()
		assert.Zero(t, n)
	}
}

// (a) again, with the racing use written and its entry dropped before
// the mark: a cache that keeps no clean entries (CacheSize < 0) drops an
// entry as soon as its use is written, and a full one evicts clean
// entries at random. The scan read the file before that write; the mark
// would find nothing in memory. The token answered valid first: it must
// survive all the same.
func TestDB_Sweep_UseWrittenBeforeMarkKeepsToken(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock := settableClock(t0)
	h := &betweenTx{msg: "tokenstore: sweep scan"}
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, CacheSize: -1, Now: clock, Logger: slog.New(h)})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	tok, _, err := db.Issue(ctx, "u", WithPolicy(Sliding(time.Hour, 0)))
	require.NoError(t, err)

	now.Store(t0.Add(70 * time.Minute).UnixMilli())
	h.fn = func(int) {
		now.Store(t0.Add(59 * time.Minute).UnixMilli())
		_, err := db.Validate(ctx, tok)
		require.NoError(t, err)
		require.NoError(t, db.Flush(ctx)) // the use is written, its entry dropped
		now.Store(t0.Add(70 * time.Minute).UnixMilli())
	}
	n, err := db.Sweep(ctx)
	h.fn = nil
	require.NoError(t, err)
	assert.Equal(t, 1, h.n)
	assert.Zero(t, n)
	_, err = db.Validate(ctx, tok)
	require.NoError(t, err, "answered valid before the sweep decided: kept")
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// While a sweep holds clean entries (from its scan to its mark), neither
// eviction nor a cache that keeps none drops one; after, the shard
// shrinks back as inserts come.
func TestCache_HoldClean(t *testing.T) {
	read := func() (record, error) { return testRecord(1000), nil }
	tests := []struct {
		give int // cache size
		want int // entries of shard 0 after the next insert
	}{
		{cacheShards, 3}, // 1 clean entry a shard: two evicted, one inserted
		{-1, 2},          // none: two evicted, the new one released too
	}
	for _, tt := range tests {
		size := tt.give
		c := newCache(size)
		c.holdClean(true)
		for n := range 4 {
			_, err := c.lookup(shardHash(n), 2000, false, read)
			require.NoError(t, err)
		}
		assert.Len(t, c.shards[0].m, 4, "size %d: none dropped while held", size)
		c.holdClean(false)
		_, err := c.lookup(shardHash(4), 2000, false, read)
		require.NoError(t, err)
		assert.Len(t, c.shards[0].m, tt.want, "size %d: shrinks back", size)
	}
}
