package tokenstore

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A sweep cut short (its ctx cancelled) after its subjects pass has
// committed, before its records pass: its decision was taken at its mark,
// and the tokens have lost their subjects entries. A Validate descheduled
// between its clock read (59 min, before the 60 min deadline) and its use
// that lands after the cut must still be refused: answered valid, its use
// kept the token alive past the next sweep's clock (70 min, the cut
// sweep's own), which re-filed it without its subjects entry — missed by
// List and RevokeSubject, and reported by Check.
func TestDB_Sweep_CutAfterMarkThenUseIsRefused(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep transaction"}
	db, at := sweepRaceDB(t, h)
	toks, _ := issueSliding(t, db, 2)
	_, err := db.Validate(ctx, toks[0]) // cached
	require.NoError(t, err)

	at(70 * time.Minute)
	cut, cancel := context.WithCancel(ctx)
	defer cancel()
	h.fn = func(n int) {
		if n == 2 { // the subjects pass (one token a transaction) has committed
			cancel()
		}
	}
	_, err = db.Sweep(cut)
	h.fn = nil
	require.ErrorIs(t, err, context.Canceled)

	at(59 * time.Minute) // read before the sweep's clock, used after the cut
	for i, tok := range toks {
		_, err := db.Validate(ctx, tok)
		require.ErrorIs(t, err, ErrExpired, "token %d: the cut sweep decided first", i)
		_, err = db.Lookup(ctx, tok)
		require.ErrorIs(t, err, ErrExpired, "token %d", i)
	}
	_, _, err = db.Rotate(ctx, toks[0], WithGrace(time.Minute))
	require.ErrorIs(t, err, ErrExpired)

	at(70 * time.Minute)
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for i, tok := range toks {
		_, err := db.Validate(ctx, tok)
		require.ErrorIs(t, err, ErrNotFound, "token %d", i)
	}
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// Get and List answer a token the sweep has decided to delete as Lookup
// does: expired, not live. Here the sweep is cut after the first of its
// two subjects transactions, so one token has lost its subjects entry and
// the other has not; at 59 min (before the 60 min deadline, after the
// sweep's decision at 70 min) Lookup refuses both, and Get answered them
// live, List listed the one whose entry was left.
func TestDB_Sweep_CutAfterMarkGetAndListAgree(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep transaction"}
	db, at := sweepRaceDB(t, h)
	toks, ids := issueSliding(t, db, 2)
	at(70 * time.Minute)
	cut, cancel := context.WithCancel(ctx)
	defer cancel()
	h.fn = func(n int) {
		if n == 1 {
			cancel()
		}
	}
	_, err := db.Sweep(cut)
	h.fn = nil
	require.ErrorIs(t, err, context.Canceled)

	at(59 * time.Minute)
	for i, tok := range toks {
		_, err := db.Lookup(ctx, tok)
		require.ErrorIs(t, err, ErrExpired, "token %d", i)
		_, err = db.Get(ctx, ids[i])
		require.ErrorIs(t, err, ErrExpired, "token %d: Get as Lookup", i)
	}
	listed, err := db.List(ctx, "u")
	require.NoError(t, err)
	assert.Empty(t, listed, "List as Lookup")
}

// A sweep that panics between its scan and its mark (here the user's
// Logger, on the scan's line) releases the cache's hold on clean entries
// as it unwinds: held for good, no clean entry was ever dropped again, and
// a cache that keeps none (CacheSize < 0) grew by every token checked.
func TestDB_Sweep_PanicReleasesHold(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock := settableClock(t0)
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, CacheSize: -1, Now: clock,
		Logger: slog.New(&panicOnceOn{msg: "tokenstore: sweep scan"})})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	issued := issueToUser(t, db, 4, Absolute(time.Hour))
	now.Store(t0.Add(2 * time.Hour).UnixMilli())
	func() {
		defer func() { require.NotNil(t, recover(), "the logger panicked") }()
		_, _ = db.Sweep(ctx)
	}()
	for i := range db.cache.shards {
		assert.False(t, db.cache.shards[i].hold, "shard %d still held", i)
	}
	now.Store(t0.UnixMilli())
	for _, is := range issued {
		_, err := db.Lookup(ctx, is.Token)
		require.NoError(t, err)
	}
	n := 0
	for i := range db.cache.shards {
		n += len(db.cache.shards[i].m)
	}
	assert.Zero(t, n, "a cache that keeps no clean entries keeps none")
}

// A token the sweep finds alive by a use until exactly 0 (1970-01-01,
// on a clock before it) is re-filed, not deleted: sweepItem.refile read 0
// as "not re-filed", so the passes deleted a live token the Validate
// beside them had answered valid and would again.
func TestDB_Sweep_RefileAtZero(t *testing.T) {
	ctx := context.Background()
	t0 := time.UnixMilli(-90 * time.Minute.Milliseconds())
	now, clock := settableClock(t0)
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: clock})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	tok, _, err := db.Issue(ctx, "u", WithPolicy(Sliding(time.Hour, 0))) // filed at -30 min
	require.NoError(t, err)
	now.Store(-time.Hour.Milliseconds())
	info, err := db.Validate(ctx, tok) // in memory: alive until 0
	require.NoError(t, err)
	require.Equal(t, int64(0), info.ExpiresAt.UnixMilli())

	now.Store(-time.Minute.Milliseconds())
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "alive until 0, a minute from now")
	_, err = db.Validate(ctx, tok)
	require.NoError(t, err)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// With every use written before Validate returns (TouchInterval < 0),
// a use at a time before 1970, or at exactly 0, is written and counted
// as any other: persistTouch read a use of 0 as none (not written) and
// one before 1970 as not written (left unwritten in memory, uncounted).
func TestDB_PersistTouch_Before1970(t *testing.T) {
	ctx := context.Background()
	now, clock := settableClock(time.UnixMilli(-time.Hour.Milliseconds()))
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, TouchInterval: -1, Now: clock})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	tok, info, err := db.Issue(ctx, "u", WithPolicy(Sliding(2*time.Hour, 0)))
	require.NoError(t, err)
	for i, at := range []int64{-5, 0} {
		now.Store(at)
		_, err := db.Validate(ctx, tok)
		require.NoError(t, err)
		assert.Equal(t, uint64(i+1), db.Stats().TouchWrites, "use at %d ms", at)
		var used, usedMax int64
		require.NoError(t, view(db.bolt, func(tx *bolt.Tx) error {
			_, rec, err := getByID(tx, info.ID[:])
			used, usedMax = rec.lastUsed, int64(beUint64(tx.Bucket(bucketMeta).Get(metaUsedMax)))
			return err
		}))
		assert.Equal(t, at, used, "written before Validate returned: the file holds the use at %d ms", at)
		assert.GreaterOrEqual(t, usedMax, used, "usedmax is at least every stored use")
	}
}
