package tokenstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	tokenstoretest.Run(t, func(t *testing.T, c tokenstoretest.Config) tokenstore.Store {
		return mustOpen(t, c.FileOptions())
	})
}

// mustOpen opens a new store in t.TempDir() and closes it when the test ends.
func mustOpen(t testing.TB, o *tokenstore.Options) *tokenstore.DB {
	t.Helper()
	return mustOpenAt(t, t.TempDir()+"/tokens.db", o)
}

// mustOpenAt opens the store at path and closes it when the test ends.
func mustOpenAt(t testing.TB, path string, o *tokenstore.Options) *tokenstore.DB {
	t.Helper()
	db, err := tokenstore.Open(path, o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

// TestDB_Revoke_ConcurrentRevokeSubject checks that once any call has seen
// a token deleted, Validate refuses it, though the deleting call (here a
// RevokeSubject in another goroutine) has not returned yet: a Revoke that
// answers ErrNotFound, or a List without the token, must be followed by a
// refusing Validate, even when the token was in memory.
func TestDB_Revoke_ConcurrentRevokeSubject(t *testing.T) {
	db := mustOpen(t, &tokenstore.Options{SweepInterval: -1})
	ctx := t.Context()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := db.RevokeSubject(ctx, "user")
			assert.NoError(t, err)
		}
	})
	defer wg.Wait()
	defer close(stop)

	var revokedElsewhere, listedGone int
	for range 200 {
		token, info, err := db.Issue(ctx, "user")
		require.NoError(t, err)
		if _, err := db.Validate(ctx, token); err != nil { // cache it
			require.ErrorIs(t, err, tokenstore.ErrNotFound)
		}
		list, err := db.List(ctx, "user")
		require.NoError(t, err)
		if !slices.ContainsFunc(list, func(in tokenstore.Info) bool { return in.ID == info.ID }) {
			listedGone++
			_, err := db.Validate(ctx, token)
			require.ErrorIs(t, err, tokenstore.ErrNotFound, "List no longer shows the token, Validate must refuse it")
		}
		revokeErr := db.Revoke(ctx, token)
		if revokeErr != nil {
			require.ErrorIs(t, revokeErr, tokenstore.ErrNotFound)
			revokedElsewhere++
		}
		_, err = db.Validate(ctx, token)
		require.ErrorIs(t, err, tokenstore.ErrNotFound, "Validate after Revoke returned %v", revokeErr)
	}
	t.Logf("of 200 tokens, %d were gone from List and %d revoked by the other goroutine first", listedGone, revokedElsewhere)
}

// crashImage copies the file of an open store, as a crash would leave it:
// only what its committed transactions wrote. Call it while no write is in
// progress.
func crashImage(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	copyPath := filepath.Join(t.TempDir(), "crash.db")
	require.NoError(t, os.WriteFile(copyPath, b, 0o600))
	return copyPath
}

// noWrites are Options for a store whose background goroutine never
// ticks during a test: no sweeps, and uses written on Close only.
func noWrites(clock *tokenstoretest.Clock) *tokenstore.Options {
	return &tokenstore.Options{Now: clock.Now, SweepInterval: -1, TouchInterval: 24 * time.Hour}
}

func TestOpen_NewFileMode(t *testing.T) {
	db := mustOpen(t, nil)
	fi, err := os.Stat(db.Path())
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "a token file is readable by its owner only")
}

func TestDB_Close_ReopenKeepsTokensAndUses(t *testing.T) {
	clock := tokenstoretest.NewClock()
	o := noWrites(clock)
	o.Policy = tokenstore.Sliding(time.Hour, 0)
	db := mustOpen(t, o)
	ctx := t.Context()
	start := clock.Now()
	token, info, err := db.Issue(ctx, "user", tokenstore.WithMetadata(map[string]string{"k": "v"}))
	require.NoError(t, err)
	other, _, err := db.Issue(ctx, "other", tokenstore.WithPolicy(tokenstore.Absolute(3*time.Hour)))
	require.NoError(t, err)
	revoked, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	require.NoError(t, db.Revoke(ctx, revoked))

	used := clock.Advance(10 * time.Minute)
	_, err = db.Validate(ctx, token)
	require.NoError(t, err)
	assert.Zero(t, db.Stats().TouchWrites, "a use within TouchInterval stays in memory")

	// A crash now loses the use: the token expires earlier, never later.
	crashed := mustOpenAt(t, crashImage(t, db.Path()), noWrites(clock))
	got, err := crashed.Lookup(ctx, token)
	require.NoError(t, err)
	assert.True(t, start.Equal(got.LastUsedAt), "the crash image has the use as persisted")
	assert.True(t, start.Add(time.Hour).Equal(got.ExpiresAt), "fails closed: the earlier deadline")

	// Close writes it.
	require.NoError(t, db.Close())
	assert.Equal(t, uint64(1), db.Stats().TouchWrites, "Close wrote the pending use")
	assert.Equal(t, uint64(1), db.Stats().TouchesPersisted)

	db = mustOpenAt(t, db.Path(), noWrites(clock))
	got, err = db.Lookup(ctx, token)
	require.NoError(t, err)
	assert.Equal(t, info.ID, got.ID)
	assert.Equal(t, map[string]string{"k": "v"}, got.Metadata)
	assert.Equal(t, tokenstore.Sliding(time.Hour, 0), got.Policy)
	assert.True(t, used.Equal(got.LastUsedAt), "LastUsedAt survives Close and Open: got %v", got.LastUsedAt)
	assert.True(t, used.Add(time.Hour).Equal(got.ExpiresAt), "and so does the slid deadline")
	_, err = db.Validate(ctx, other)
	require.NoError(t, err)
	_, err = db.Validate(ctx, revoked)
	require.ErrorIs(t, err, tokenstore.ErrNotFound, "a revoked token stays revoked")
	assert.Equal(t, int64(2), db.Stats().Tokens)

	// The token lives exactly to its persisted deadline after the reopen.
	clock.Advance(time.Hour - time.Millisecond)
	_, err = db.Validate(ctx, token)
	require.NoError(t, err)
}

func TestDB_Open_ReopenNeverExtendsLifetime(t *testing.T) {
	clock := tokenstoretest.NewClock()
	ctx := t.Context()
	db := mustOpen(t, noWrites(clock))
	abs, _, err := db.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	require.NoError(t, err)
	capped, _, err := db.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Sliding(time.Hour, 90*time.Minute)))
	require.NoError(t, err)
	clock.Advance(50 * time.Minute)
	_, err = db.Validate(ctx, capped) // deadline min(1h50m, 1h30m)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	clock.Advance(39*time.Minute + 59*time.Second + 999*time.Millisecond) // down until 1ms before +1h30m
	db = mustOpenAt(t, db.Path(), noWrites(clock))
	_, err = db.Validate(ctx, abs)
	require.ErrorIs(t, err, tokenstore.ErrExpired, "the downtime counted: the absolute token died at +1h")
	_, err = db.Validate(ctx, capped)
	require.NoError(t, err, "1ms before the cap")
	require.NoError(t, db.Close())

	clock.Advance(time.Millisecond)
	db = mustOpenAt(t, db.Path(), noWrites(clock))
	_, err = db.Validate(ctx, capped)
	require.ErrorIs(t, err, tokenstore.ErrExpired, "the cap holds across reopens")

	clock.Advance(7 * 24 * time.Hour) // a week later
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}

// A store whose clock reads before 1970 (Options.Now, a badly set clock:
// Unix times are negative) keeps its deadlines and its grace: a token not
// yet used in memory is not taken as used at 1970, which gave it a
// deadline at the cap instead of its idle timeout, and ended a successor's
// grace at once, so that Rotate's retry within the grace revoked the
// family (ErrReused). A token carries the time clamped to 1970
// (Format.GenerateAt).
func TestDB_ClockBefore1970(t *testing.T) {
	clock := tokenstoretest.NewClockAt(time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx := t.Context()
	db := mustOpen(t, &tokenstore.Options{Now: clock.Now, SweepInterval: -1, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})
	a, aInfo, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	assert.Equal(t, aInfo.CreatedAt.Add(time.Hour), aInfo.ExpiresAt)
	b, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	got, err := db.Get(ctx, aInfo.ID)
	require.NoError(t, err)
	assert.Equal(t, aInfo.CreatedAt.Add(time.Hour), got.ExpiresAt, "idle timeout, not the cap")
	list, err := db.List(ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, aInfo.CreatedAt.Add(time.Hour), list[0].ExpiresAt)

	clock.Advance(time.Second)
	next, _, err := db.Rotate(ctx, b, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	clock.Advance(time.Second)
	again, _, err := db.Rotate(ctx, b, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err, "a retry within the grace")
	assert.Equal(t, next, again)
	_, err = db.Validate(ctx, next)
	require.NoError(t, err)

	clock.Advance(2 * time.Hour)
	_, err = db.Validate(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrExpired, "idle for 2h of a 1h timeout")
}

// TestDB_Validate_BackgroundWriter runs in a synctest bubble: the
// background writer's ticker and Options.Now (time.Now) run on the
// bubble's fake clock.
func TestDB_Validate_BackgroundWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := mustOpen(t, &tokenstore.Options{
			Policy:        tokenstore.Sliding(time.Hour, 0),
			TouchInterval: time.Minute, // written every 30 s
			SweepInterval: -1,
		})
		ctx := t.Context()
		token, info, err := db.Issue(ctx, "user")
		require.NoError(t, err)
		time.Sleep(10 * time.Second)
		used := time.Now()
		_, err = db.Validate(ctx, token)
		require.NoError(t, err)
		synctest.Wait()
		require.Zero(t, db.Stats().TouchWrites, "Validate itself did not write")
		crashed := mustOpenAt(t, crashImage(t, db.Path()), &tokenstore.Options{SweepInterval: -1})
		got, err := crashed.Lookup(ctx, token)
		require.NoError(t, err)
		assert.True(t, info.LastUsedAt.Equal(got.LastUsedAt), "not yet on disk")
		require.NoError(t, crashed.Close())

		time.Sleep(20 * time.Second) // the writer's first tick, 30 s after Open
		synctest.Wait()
		st := db.Stats()
		assert.Equal(t, uint64(1), st.TouchWrites, "one background transaction")
		assert.Equal(t, uint64(1), st.TouchesPersisted)
		crashed = mustOpenAt(t, crashImage(t, db.Path()), &tokenstore.Options{SweepInterval: -1})
		got, err = crashed.Lookup(ctx, token)
		require.NoError(t, err)
		assert.True(t, used.Equal(got.LastUsedAt), "the background writer persisted the use: got %v, want %v", got.LastUsedAt, used)
		require.NoError(t, crashed.Close())

		time.Sleep(time.Minute) // two more ticks with nothing to write
		synctest.Wait()
		assert.Equal(t, uint64(1), db.Stats().TouchWrites, "no write without a new use")
	})
}

// Under default Options a Validate never writes, however long the token
// was idle; the use is in the file after the background writer's next
// pass (Flush here), and a crash before it loses it: the token then
// expires by its older stored use, never later.
func TestDB_Validate_ReturningUseWritesNothing(t *testing.T) {
	clock := tokenstoretest.NewClock()
	ctx := t.Context()
	db := mustOpen(t, &tokenstore.Options{
		Now:           clock.Now,
		Policy:        tokenstore.Sliding(24*time.Hour, 0),
		TouchInterval: time.Hour, // the background writer's first pass is in 30 minutes of real time
		SweepInterval: -1,
	})
	token, issued, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	used := clock.Advance(10 * time.Hour) // idle 10 × TouchInterval
	info, err := db.Validate(ctx, token)
	require.NoError(t, err)
	assert.True(t, used.Equal(info.LastUsedAt))
	st := db.Stats()
	assert.Zero(t, st.TouchWrites, "no write transaction")
	assert.Zero(t, st.TouchesPersisted)

	crashed := mustOpenAt(t, crashImage(t, db.Path()), noWrites(clock))
	got, err := crashed.Lookup(ctx, token)
	require.NoError(t, err)
	assert.True(t, issued.LastUsedAt.Equal(got.LastUsedAt), "a crash now loses the use: %v", got.LastUsedAt)
	assert.True(t, got.ExpiresAt.Before(info.ExpiresAt), "and the token expires earlier, never later")

	require.NoError(t, db.Flush(ctx))
	assert.Equal(t, uint64(1), db.Stats().TouchesPersisted)
	crashed = mustOpenAt(t, crashImage(t, db.Path()), noWrites(clock))
	got, err = crashed.Lookup(ctx, token)
	require.NoError(t, err)
	assert.True(t, used.Equal(got.LastUsedAt), "flushed: durable")
	assert.True(t, info.ExpiresAt.Equal(got.ExpiresAt))
}

// FsyncReturningUses restores the write before returning for a token
// whose stored use is TouchInterval behind.
func TestDB_Validate_FsyncReturningUses(t *testing.T) {
	clock := tokenstoretest.NewClock()
	ctx := t.Context()
	db := mustOpen(t, &tokenstore.Options{
		Now:                clock.Now,
		Policy:             tokenstore.Sliding(2*time.Hour, 0),
		TouchInterval:      10 * time.Minute,
		FsyncReturningUses: true,
		SweepInterval:      -1,
	})
	token, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	abs, _, err := db.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Absolute(5*time.Hour)))
	require.NoError(t, err)
	writes := func() uint64 { return db.Stats().TouchWrites }
	validate := func(token string) {
		t.Helper()
		_, err := db.Validate(ctx, token)
		require.NoError(t, err)
	}

	clock.Advance(5 * time.Minute)
	validate(token)
	assert.Zero(t, writes(), "stored use 5m behind")
	clock.Advance(5*time.Minute - time.Millisecond)
	validate(token)
	assert.Zero(t, writes(), "stored use 1ms short of TouchInterval behind")
	_, err = db.Lookup(ctx, token)
	require.NoError(t, err)
	assert.Zero(t, writes())

	written := clock.Advance(time.Millisecond)
	validate(token)
	assert.Equal(t, uint64(1), writes(), "stored use TouchInterval behind: Validate writes")
	assert.Equal(t, uint64(1), db.Stats().TouchesPersisted)

	clock.Advance(time.Minute)
	validate(token)
	assert.Equal(t, uint64(1), writes(), "the write moved the stored use")
	crashed := mustOpenAt(t, crashImage(t, db.Path()), noWrites(clock))
	got, err := crashed.Lookup(ctx, token)
	require.NoError(t, err)
	assert.True(t, written.Equal(got.LastUsedAt), "the write is durable: got %v", got.LastUsedAt)
	assert.True(t, written.Add(2*time.Hour).Equal(got.ExpiresAt), "with its deadline")
	n, err := crashed.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)

	clock.Advance(30 * time.Minute)
	validate(abs)
	_, err = db.Lookup(ctx, token)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), writes(), "an absolute token's use never needs a write at once")
}

func TestDB_Validate_TouchIntervalNegative(t *testing.T) {
	clock := tokenstoretest.NewClock()
	ctx := t.Context()
	db := mustOpen(t, &tokenstore.Options{Now: clock.Now, TouchInterval: -1, SweepInterval: -1})
	token, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	abs, _, err := db.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	require.NoError(t, err)
	for i := range 3 {
		clock.Advance(time.Millisecond)
		_, err := db.Validate(ctx, token)
		require.NoError(t, err)
		assert.Equal(t, uint64(i+1), db.Stats().TouchWrites, "every Validate writes")
	}
	_, err = db.Validate(ctx, token)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), db.Stats().TouchWrites, "a second use in the same millisecond has nothing to write")
	_, err = db.Validate(ctx, abs)
	require.NoError(t, err)
	assert.Equal(t, uint64(4), db.Stats().TouchWrites, "absolute tokens too")
}

func TestOpen_Locked(t *testing.T) {
	db := mustOpen(t, nil)
	for _, ro := range []bool{false, true} {
		t.Run(fmt.Sprintf("ReadOnly=%v", ro), func(t *testing.T) {
			start := time.Now()
			other, err := tokenstore.Open(db.Path(), &tokenstore.Options{LockTimeout: 200 * time.Millisecond, ReadOnly: ro})
			took := time.Since(start)
			if err == nil {
				require.NoError(t, other.Close())
			}
			require.ErrorIs(t, err, tokenstore.ErrLocked)
			assert.GreaterOrEqual(t, took, 150*time.Millisecond, "waited for the lock")
			assert.Less(t, took, 2*time.Second, "about LockTimeout, never a hang")
		})
	}
	require.NoError(t, db.Close())
	db = mustOpenAt(t, db.Path(), &tokenstore.Options{LockTimeout: 200 * time.Millisecond})
	_, _, err := db.Issue(t.Context(), "user")
	require.NoError(t, err, "the lock is released by Close")
}

// tokenFile makes a closed tokenstore file with one token in it.
func tokenFile(t *testing.T) (path, token string) {
	t.Helper()
	db, err := tokenstore.Open(filepath.Join(t.TempDir(), "tokens.db"), &tokenstore.Options{SweepInterval: -1})
	require.NoError(t, err)
	token, _, err = db.Issue(t.Context(), "user", tokenstore.WithMetadata(map[string]string{"scope": "read"}))
	require.NoError(t, err)
	require.NoError(t, db.Close())
	return db.Path(), token
}

// updateBolt changes a closed file through bbolt itself.
func updateBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, bdb.Update(fn))
	require.NoError(t, bdb.Close())
}

func TestOpen_Corrupt(t *testing.T) {
	tests := []struct {
		name string
		give func(t *testing.T) string // makes the file
	}{
		{"garbage", func(t *testing.T) string {
			b := make([]byte, 64<<10)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return writeFile(t, b)
		}},
		{"short text file", func(t *testing.T) string {
			return writeFile(t, []byte("user-42: secret\n"))
		}},
		{"zeros", func(t *testing.T) string {
			return writeFile(t, make([]byte, 32<<10))
		}},
		{"another application's bbolt file", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "other.db")
			updateBolt(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("users"))
				if err != nil {
					return err
				}
				return b.Put([]byte("alice"), []byte("x"))
			})
			return path
		}},
		{"a meta bucket of another application", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "other.db")
			updateBolt(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("meta"))
				if err != nil {
					return err
				}
				return b.Put([]byte("app"), []byte("other"))
			})
			return path
		}},
		{"newer schema", func(t *testing.T) string {
			path, _ := tokenFile(t)
			updateBolt(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint32(nil, 99))
			})
			return path
		}},
		{"missing bucket", func(t *testing.T) string {
			path, _ := tokenFile(t)
			updateBolt(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("expiry")) })
			return path
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.give(t)
			before, err := os.ReadFile(path)
			require.NoError(t, err)
			for _, ro := range []bool{false, true} {
				db, err := tokenstore.Open(path, &tokenstore.Options{ReadOnly: ro, SweepInterval: -1})
				if err == nil {
					require.NoError(t, db.Close())
				}
				require.ErrorIs(t, err, tokenstore.ErrCorrupt, "ReadOnly=%v", ro)
				after, err := os.ReadFile(path)
				require.NoError(t, err)
				require.True(t, bytes.Equal(before, after), "ReadOnly=%v: the file was modified", ro)
			}
		})
	}
}

// TestOpen_Truncated cuts a token file at every page boundary and around
// the size its meta page records: cut short of that size, it is
// ErrCorrupt, untouched, and does not crash the process (bbolt faults with
// SIGBUS reading pages past the end of a file); cut only in the space bbolt
// grew ahead, it works.
func TestOpen_Truncated(t *testing.T) {
	db := mustOpen(t, &tokenstore.Options{SweepInterval: -1})
	reqs := make([]tokenstore.IssueRequest, 500)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: fmt.Sprintf("user-%d", i%10)}
	}
	_, err := db.IssueBatch(t.Context(), reqs)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	full, err := os.ReadFile(db.Path())
	require.NoError(t, err)
	bdb, err := bolt.Open(db.Path(), 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	var used int
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error { used = int(tx.Size()); return nil }))
	require.NoError(t, bdb.Close())
	page := os.Getpagesize()
	require.Greater(t, used, 8*page)
	require.LessOrEqual(t, used, len(full))

	cuts := []int{1, 100, used - 1, used, used + 100}
	for n := page; n < len(full); n += page {
		cuts = append(cuts, n)
	}
	for _, n := range cuts {
		if n > len(full) {
			continue
		}
		path := writeFile(t, full[:n])
		for _, ro := range []bool{false, true} {
			db, err := tokenstore.Open(path, &tokenstore.Options{ReadOnly: ro, SweepInterval: -1})
			if n >= used {
				require.NoError(t, err, "cut to %d of %d bytes, past the %d in use", n, len(full), used)
				list, err := db.List(t.Context(), "user-1")
				require.NoError(t, err)
				assert.Len(t, list, 50)
				require.NoError(t, db.Close())
				continue
			}
			if err == nil {
				_, _ = db.List(t.Context(), "user-1")
				require.NoError(t, db.Close())
			}
			require.ErrorIs(t, err, tokenstore.ErrCorrupt, "cut to %d of %d bytes, ReadOnly=%v", n, used, ro)
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.True(t, bytes.Equal(full[:n], after), "cut to %d: the file was modified", n)
		}
	}
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file.db")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}

func TestDB_Lookup_CorruptRecord(t *testing.T) {
	path, token := tokenFile(t)
	var id uuid.UUID
	// Flip one byte in the middle of the (only) record, through bbolt, so
	// that the file itself stays valid.
	updateBolt(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("tokens"))
		k, v := b.Cursor().First()
		require.NotNil(t, k)
		rec := bytes.Clone(v)
		copy(id[:], rec[26:42]) // bucket.go: record layout, version 2
		rec[20] ^= 0x01
		return b.Put(bytes.Clone(k), rec)
	})
	db := mustOpenAt(t, path, &tokenstore.Options{SweepInterval: -1})
	ctx := t.Context()
	_, err := db.Lookup(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrCorrupt, "never a wrong answer")
	assert.NotContains(t, err.Error(), token)
	_, err = db.Validate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrCorrupt)
	_, err = db.Get(ctx, id)
	require.ErrorIs(t, err, tokenstore.ErrCorrupt)
	_, err = db.List(ctx, "user")
	require.ErrorIs(t, err, tokenstore.ErrCorrupt)
	err = db.ForEach(ctx, func(tokenstore.Info) error { return nil })
	require.ErrorIs(t, err, tokenstore.ErrCorrupt)
	_, _, err = db.Rotate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrCorrupt)

	_, _, err = db.Issue(ctx, "other")
	require.NoError(t, err, "the rest of the file works")
}

func TestOpen_ReadOnly(t *testing.T) {
	clock := tokenstoretest.NewClock()
	ctx := t.Context()
	db := mustOpen(t, noWrites(clock))
	token, info, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	before, err := os.ReadFile(db.Path())
	require.NoError(t, err)

	o := noWrites(clock)
	o.ReadOnly = true
	ro := mustOpenAt(t, db.Path(), o)
	ro2 := mustOpenAt(t, db.Path(), o) // readers share the lock
	clock.Advance(time.Minute)
	got, err := ro.Validate(ctx, token)
	require.NoError(t, err)
	assert.Equal(t, info.ID, got.ID)
	_, err = ro2.Lookup(ctx, token)
	require.NoError(t, err)
	_, err = ro.Get(ctx, info.ID)
	require.NoError(t, err)
	list, err := ro.List(ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 1)
	require.NoError(t, ro.ForEach(ctx, func(tokenstore.Info) error { return nil }))
	assert.Equal(t, int64(1), ro.Stats().Tokens)

	writes := map[string]func() error{
		"Issue": func() error { _, _, err := ro.Issue(ctx, "user"); return err },
		"IssueBatch": func() error {
			_, err := ro.IssueBatch(ctx, []tokenstore.IssueRequest{{Subject: "user"}})
			return err
		},
		"Revoke":        func() error { return ro.Revoke(ctx, token) },
		"RevokeID":      func() error { return ro.RevokeID(ctx, info.ID) },
		"RevokeSubject": func() error { _, err := ro.RevokeSubject(ctx, "user"); return err },
		"Rotate":        func() error { _, _, err := ro.Rotate(ctx, token); return err },
		"Sweep":         func() error { _, err := ro.Sweep(ctx); return err },
	}
	for name, write := range writes {
		assert.ErrorIs(t, write(), tokenstore.ErrReadOnly, name)
	}
	require.NoError(t, ro.Close())
	require.NoError(t, ro2.Close())
	after, err := os.ReadFile(db.Path())
	require.NoError(t, err)
	assert.True(t, bytes.Equal(before, after), "a read-only session writes nothing")
}

func TestOpen_ReadOnlyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.db")
	_, err := tokenstore.Open(path, &tokenstore.Options{ReadOnly: true})
	require.ErrorIs(t, err, fs.ErrNotExist)
	_, err = os.Stat(path)
	assert.ErrorIs(t, err, fs.ErrNotExist, "not created")
}

func TestOpen_BadOptions(t *testing.T) {
	tests := []struct {
		name string
		give tokenstore.Options
		want error // nil: any error
	}{
		{"prefix with punctuation", tokenstore.Options{Prefix: "Bad!"}, nil},
		{"uppercase prefix", tokenstore.Options{Prefix: "TKS"}, nil},
		{"prefix starting with a digit", tokenstore.Options{Prefix: "1tks"}, nil},
		{"prefix with underscore", tokenstore.Options{Prefix: "my_app"}, nil},
		{"prefix of 17 bytes", tokenstore.Options{Prefix: "abcdefghijklmnopq"}, nil},
		{"absolute ttl 0", tokenstore.Options{Policy: tokenstore.Absolute(0)}, tokenstore.ErrInvalidPolicy},
		{"absolute ttl below 1ms", tokenstore.Options{Policy: tokenstore.Absolute(time.Microsecond)}, tokenstore.ErrInvalidPolicy},
		{"sliding idle 0", tokenstore.Options{Policy: tokenstore.Sliding(0, time.Hour)}, tokenstore.ErrInvalidPolicy},
		{"sliding negative cap", tokenstore.Options{Policy: tokenstore.Sliding(time.Hour, -time.Hour)}, tokenstore.ErrInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.db")
			db, err := tokenstore.Open(path, &tt.give)
			if err == nil {
				require.NoError(t, db.Close())
			}
			require.Error(t, err)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			_, err = os.Stat(path)
			assert.ErrorIs(t, err, fs.ErrNotExist, "no file created")
		})
	}
}

func TestDB_IssueBatch(t *testing.T) {
	clock := tokenstoretest.NewClock()
	ctx := t.Context()
	o := noWrites(clock)
	o.Policy = tokenstore.Absolute(time.Hour)
	o.MaxTokensPerSubject = 3
	db := mustOpen(t, o)

	out, err := db.IssueBatch(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, out)

	out, err = db.IssueBatch(ctx, []tokenstore.IssueRequest{
		{Subject: "a"},
		{Subject: "a", Policy: tokenstore.Sliding(2*time.Hour, 0), Metadata: map[string]string{"k": "v"}},
		{Subject: "b"},
	})
	require.NoError(t, err)
	require.Len(t, out, 3)
	for i, x := range out {
		got, err := db.Validate(ctx, x.Token)
		require.NoError(t, err, "token %d", i)
		assert.Equal(t, x.Info.ID, got.ID)
	}
	assert.Equal(t, tokenstore.Absolute(time.Hour), out[0].Info.Policy, "zero Policy: the store's default")
	assert.Equal(t, tokenstore.Sliding(2*time.Hour, 0), out[1].Info.Policy)
	assert.Equal(t, map[string]string{"k": "v"}, out[1].Info.Metadata)
	assert.Equal(t, "b", out[2].Info.Subject)
	assert.Equal(t, int64(3), db.Stats().Tokens)

	bad := []struct {
		name string
		give []tokenstore.IssueRequest
		want error
	}{
		{"invalid subject in the middle", []tokenstore.IssueRequest{{Subject: "c"}, {Subject: ""}, {Subject: "c"}}, tokenstore.ErrInvalidSubject},
		{"invalid policy", []tokenstore.IssueRequest{{Subject: "c"}, {Subject: "c", Policy: tokenstore.Absolute(0)}}, tokenstore.ErrInvalidPolicy},
		{"metadata too large", []tokenstore.IssueRequest{{Subject: "c"}, {Subject: "c", Metadata: map[string]string{"k": strings.Repeat("v", 5000)}}}, tokenstore.ErrMetadataTooLarge},
		{"over the limit alone", []tokenstore.IssueRequest{{Subject: "c"}, {Subject: "c"}, {Subject: "c"}, {Subject: "c"}}, tokenstore.ErrTokenLimit},
		{"over the limit with the stored ones", []tokenstore.IssueRequest{{Subject: "c"}, {Subject: "a"}, {Subject: "a"}}, tokenstore.ErrTokenLimit},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			out, err := db.IssueBatch(ctx, tt.give)
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, out)
			assert.Equal(t, int64(3), db.Stats().Tokens, "all or nothing")
			list, err := db.List(ctx, "c")
			require.NoError(t, err)
			assert.Empty(t, list)
		})
	}

	clock.Advance(time.Hour) // a's default-policy token expired: it no longer counts
	_, err = db.IssueBatch(ctx, []tokenstore.IssueRequest{{Subject: "a"}, {Subject: "a"}})
	require.NoError(t, err)

	require.NoError(t, db.Close())
	_, err = db.IssueBatch(ctx, []tokenstore.IssueRequest{{Subject: "a"}})
	require.ErrorIs(t, err, tokenstore.ErrClosed)
}

func TestDB_ForEach(t *testing.T) {
	clock := tokenstoretest.NewClock()
	ctx := t.Context()
	db := mustOpen(t, noWrites(clock))
	var ids []uuid.UUID
	var tokens []string
	for i, p := range []tokenstore.Policy{tokenstore.Absolute(time.Hour), tokenstore.Sliding(3*time.Hour, 0), tokenstore.Absolute(5 * time.Hour)} {
		token, info, err := db.Issue(ctx, fmt.Sprintf("user-%d", i%2), tokenstore.WithPolicy(p))
		require.NoError(t, err)
		ids = append(ids, info.ID)
		tokens = append(tokens, token)
		clock.Advance(time.Minute)
	}
	used := clock.Advance(2 * time.Hour) // the first one expired, not swept
	_, err := db.Validate(ctx, tokens[1])
	require.NoError(t, err)

	var seen []tokenstore.Info
	require.NoError(t, db.ForEach(ctx, func(in tokenstore.Info) error {
		seen = append(seen, in)
		return nil
	}))
	require.Len(t, seen, 3, "every token, the expired one too")
	for i, in := range seen {
		assert.Equal(t, ids[i], in.ID, "creation order")
	}
	assert.True(t, used.Equal(seen[1].LastUsedAt), "the latest use, not yet written")

	errStop := errors.New("stop")
	n := 0
	err = db.ForEach(ctx, func(tokenstore.Info) error {
		n++
		if n == 2 {
			return errStop
		}
		return nil
	})
	require.ErrorIs(t, err, errStop)
	assert.Equal(t, 2, n, "fn's error stops the walk")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = db.ForEach(cctx, func(tokenstore.Info) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
}

func TestDB_Sweep_CancelledContext(t *testing.T) {
	clock := tokenstoretest.NewClock()
	db := mustOpen(t, noWrites(clock))
	for range 3 {
		_, _, err := db.Issue(t.Context(), "user", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
		require.NoError(t, err)
	}
	clock.Advance(time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	n, err := db.Sweep(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, n)
	assert.Equal(t, int64(3), db.Stats().Tokens, "nothing deleted")

	n, err = db.Sweep(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 3, n)
}

// TestDB_Close_StopsSweeper runs in a synctest bubble: the sweeper's
// ticker and time.Now run on the bubble's fake clock, and synctest.Test
// fails if any goroutine of the bubble outlives it.
func TestDB_Close_StopsSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := mustOpen(t, &tokenstore.Options{Policy: tokenstore.Absolute(time.Hour), SweepInterval: time.Minute})
		ctx := t.Context()
		for range 3 {
			_, _, err := db.Issue(ctx, "user")
			require.NoError(t, err)
		}
		time.Sleep(time.Hour + time.Minute)
		synctest.Wait()
		assert.Equal(t, uint64(3), db.Stats().Swept, "the background sweeper deleted them")
		assert.Zero(t, db.Stats().Tokens)

		require.NoError(t, db.Close())
		require.NoError(t, db.Close())
		synctest.Wait() // the loop goroutine has exited: nothing is left to wait for
	})
	goleak.VerifyNone(t)
}
