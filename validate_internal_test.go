package tokenstore

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Under default Options, a Validate of a token idle for 10 × TouchInterval
// starts no write transaction: the use waits for the background writer.
func TestDB_Validate_IdleTokenStartsNoWrite(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{Now: clock, SweepInterval: -1})
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	sliding, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	absolute, _, err := db.Issue(ctx, "user", WithPolicy(Absolute(30*day)))
	require.NoError(t, err)
	db.cache = newCache(defaultCacheSize) // cold: the records come from the file

	now.Add((10 * defaultTouchInterval).Milliseconds())
	began := db.commit.began.Load()
	for range 3 {
		for _, tok := range []string{sliding, absolute} {
			_, err := db.Validate(ctx, tok)
			require.NoError(t, err)
			_, err = db.Lookup(ctx, tok)
			require.NoError(t, err)
		}
		now.Add((10 * defaultTouchInterval).Milliseconds())
	}
	assert.Equal(t, began, db.commit.began.Load(), "no write transaction begun")
	assert.Zero(t, db.Stats().TouchWrites)

	require.NoError(t, db.Flush(ctx))
	assert.Equal(t, began+1, db.commit.began.Load(), "one transaction writes both uses")
	assert.Equal(t, uint64(2), db.Stats().TouchesPersisted)
}

// With FsyncReturningUses, the same Validate writes before it returns.
func TestDB_Validate_FsyncReturningUsesWrites(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{Now: clock, SweepInterval: -1, FsyncReturningUses: true})
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	tok, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	now.Add((10 * defaultTouchInterval).Milliseconds())
	began := db.commit.began.Load()
	_, err = db.Validate(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, began+1, db.commit.began.Load())
}

// A Validate of a token alive by its creation alone reads only its record;
// one alive only by a later stored use reads its ids entry too. Either
// way the answers, and what is written, are those of a full read.
func TestDB_Validate_ReadForUse(t *testing.T) {
	var now atomic.Int64
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now.Store(t0.UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{Now: clock, SweepInterval: -1, Policy: Sliding(time.Hour, 0)})
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	young, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	old, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)

	now.Add((50 * time.Minute).Milliseconds())
	_, err = db.Validate(ctx, old) // stored: old lives to 1h50
	require.NoError(t, err)
	require.NoError(t, db.Flush(ctx))
	db.cache = newCache(defaultCacheSize)

	now.Add((20 * time.Minute).Milliseconds()) // 1h10
	_, err = db.Validate(ctx, young)
	require.ErrorIs(t, err, ErrExpired, "young was never used: expired at 1h")
	info, err := db.Validate(ctx, old)
	require.NoError(t, err, "alive by its stored use at 50m: read whole")
	assert.Equal(t, now.Load(), info.LastUsedAt.UnixMilli())

	// A token alive by its creation: its Validate, then Lookup, Get and
	// a flush agree with the use just made.
	fresh, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	db.cache = newCache(defaultCacheSize)
	now.Add((10 * time.Minute).Milliseconds())
	info, err = db.Validate(ctx, fresh)
	require.NoError(t, err)
	assert.Equal(t, now.Load(), info.LastUsedAt.UnixMilli())
	looked, err := db.Lookup(ctx, fresh)
	require.NoError(t, err)
	assert.Equal(t, info, looked)
	got, err := db.Get(ctx, info.ID)
	require.NoError(t, err)
	assert.Equal(t, info.ExpiresAt, got.ExpiresAt)
	require.NoError(t, db.Flush(ctx))
	db.cache = newCache(defaultCacheSize)
	looked, err = db.Lookup(ctx, fresh)
	require.NoError(t, err)
	assert.Equal(t, info.LastUsedAt, looked.LastUsedAt, "written")
}

// With the clock set back below a stored use, even after a reopen, a
// Validate reads the stored use: last uses never move back.
func TestDB_Validate_ClockBackAfterReopen(t *testing.T) {
	var now atomic.Int64
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now.Store(t0.UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	path := filepath.Join(t.TempDir(), "t.db")
	o := &Options{Now: clock, SweepInterval: -1, Policy: Sliding(time.Hour, 0)}
	db, err := Open(path, o)
	require.NoError(t, err)
	ctx := context.Background()
	tok, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	used := now.Add((30 * time.Minute).Milliseconds())
	_, err = db.Validate(ctx, tok)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	now.Add(-(20 * time.Minute).Milliseconds()) // back to 10 minutes after the issue
	db, err = Open(path, o)
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, used, db.usedMax.Load(), "read from the file")
	info, err := db.Validate(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, used, info.LastUsedAt.UnixMilli(), "the stored use, not the clock")
}
