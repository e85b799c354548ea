package tokenstore

import (
	"errors"
	"math"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// A Validate that misses the cache while a Revoke of its token is in
// flight answers from the file, and caches nothing. The use it answered
// valid for must outlive a Revoke that then fails (a full disk, a commit
// whose fsync failed): the token stays, and dropping the use let a
// Sliding token expire before the deadline that Validate answered, beyond
// the one bound on lost uses (a crash, TouchInterval). A Revoke that
// commits takes the use with the record: nothing is written, nothing
// stays in memory. The Revoke is made here as revoke does it (deletes,
// committer), its failure an error of its fn.
func TestCache_UseDuringRevokeInFlight(t *testing.T) {
	const hour = int64(time.Hour / time.Millisecond)
	errDisk := errors.New("disk full")
	for _, fail := range []bool{true, false} {
		name := "revoke commits"
		if fail {
			name = "revoke fails"
		}
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			var now atomic.Int64
			now.Store(t0)
			path := filepath.Join(t.TempDir(), "t.db")
			o := &Options{
				Now:           func() time.Time { return time.UnixMilli(now.Load()) },
				SweepInterval: -1, TouchInterval: time.Hour, Policy: Sliding(time.Hour, 10*time.Hour),
			}
			db, tok, h := openUncached(t, path, o)
			defer func() { require.NoError(t, db.Close()) }() // the store reopened below

			used := t0 + 50*time.Minute.Milliseconds()
			now.Store(used)
			var validated Info
			var validateErr error
			err := deleteInFlight(db, h, func() error {
				validated, validateErr = db.Validate(ctx, tok) // the delete announced, not committed
				if fail {
					return errDisk
				}
				return nil
			})
			require.NoError(t, validateErr, "the file still holds the token")
			assert.Equal(t, used, validated.LastUsedAt.UnixMilli())

			s := db.cache.shard(h)
			if !fail {
				require.NoError(t, err)
				began := db.commit.began.Load()
				require.NoError(t, db.Flush(ctx))
				assert.Equal(t, began, db.commit.began.Load(), "the use went with the record: nothing to write")
				s.mu.Lock()
				_, cached := s.m[h]
				_, marked := s.deleting[h]
				npending := s.npending
				s.mu.Unlock()
				assert.False(t, cached || marked, "nothing of the token stays")
				assert.Zero(t, npending)
				_, err = db.Validate(ctx, tok)
				require.ErrorIs(t, err, ErrNotFound)
				return
			}
			require.ErrorIs(t, err, errDisk)
			assert.Equal(t, used, db.cache.used(h), "the use is in the cache, to be written")
			require.NoError(t, db.Flush(ctx))
			require.NoError(t, db.Close())
			db, err = Open(path, o)
			require.NoError(t, err)
			info, err := db.Lookup(ctx, tok)
			require.NoError(t, err)
			assert.Equal(t, used, info.LastUsedAt.UnixMilli(), "the stored last use is the Validate's")
			now.Store(t0 + hour + 10*time.Minute.Milliseconds()) // past the deadline of the use before
			_, err = db.Validate(ctx, tok)
			require.NoError(t, err, "valid to the deadline the Validate answered")
		})
	}
}

// A successor's first use, by a Validate that missed the cache while a
// delete of the successor was in flight, ends its predecessor's grace as
// any first use does, when that delete rolls back: the use kept aside is
// what ends it (cache.go), and the old token is then ErrReused.
func TestGrace_FirstUseDuringRolledBackDelete(t *testing.T) {
	e := newFamEnv(t)
	a, _ := e.issue()
	e.advance(time.Second)
	b, _ := e.rotate(a, WithGrace(time.Minute))
	hb := e.hash(b)
	require.Equal(t, int64(math.MinInt64), e.db.cache.used(hb), "b not cached: its Validate below misses")
	e.advance(time.Second)
	errDisk := errors.New("disk full")
	var validateErr error
	err := deleteInFlight(e.db, hb, func() error {
		_, validateErr = e.db.Validate(t.Context(), b)
		return errDisk
	})
	require.ErrorIs(t, err, errDisk)
	require.NoError(t, validateErr)
	_, err = e.db.Lookup(t.Context(), a)
	require.ErrorIs(t, err, ErrReused, "b's first use ended a's grace")
}

// With TouchInterval < 0 every Validate writes its use before it returns
// (Options.TouchInterval), and with FsyncReturningUses a returning user's
// use is written so: also a use answered while a Revoke of the token is
// in flight, when that Revoke then fails. Kept aside in memory only, it
// waited for a flush that TouchInterval < 0 never runs (and a crash lost
// it). The Validate runs in its own goroutine: its write waits for the
// Revoke's transaction, which ends once the use is kept aside.
func TestCache_UseDuringFailedRevokeWrittenBeforeValidateReturns(t *testing.T) {
	errDisk := errors.New("disk full")
	for _, name := range []string{"TouchInterval<0", "FsyncReturningUses"} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			var now atomic.Int64
			now.Store(t0)
			o := &Options{
				Now:           func() time.Time { return time.UnixMilli(now.Load()) },
				SweepInterval: -1, Policy: Sliding(time.Hour, 10*time.Hour),
			}
			if name == "FsyncReturningUses" {
				o.TouchInterval, o.FsyncReturningUses = time.Minute, true
			} else {
				o.TouchInterval = -1
			}
			db, tok, h := openUncached(t, filepath.Join(t.TempDir(), "t.db"), o)

			used := t0 + 50*time.Minute.Milliseconds() // a returning user
			now.Store(used)
			validated := make(chan error, 1)
			err := deleteInFlight(db, h, func() error {
				go func() {
					_, err := db.Validate(ctx, tok)
					validated <- err
				}()
				// Until the Validate has noted its use: kept aside, or
				// (before) answered and gone.
				for db.cache.keptUse(h) != used && len(validated) == 0 {
					runtime.Gosched()
				}
				return errDisk
			})
			require.ErrorIs(t, err, errDisk)
			require.NoError(t, <-validated, "the file still holds the token")
			assert.Equal(t, used, storedLastUse(t, db, h), "the use is in the file when Validate returns")
		})
	}
}

// keptUse is h's use kept aside while a delete of it is in flight, or
// math.MinInt64 (for the tests).
func (c *cache) keptUse(h Hash) int64 {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.kept[h]; k != nil {
		return k.used
	}
	return math.MinInt64
}

// Flush writes every use held only in memory when it is called, and Close
// does so last: also a use kept aside while a Revoke of its token is in
// flight. Left out of the flush's list, it reached the pending list only
// when that Revoke failed, after the flush (Close's last one: never
// written, though Validate had answered for it before Close began). The
// flush lists it, and writes it after the Revoke's transaction: the
// record stays, so the use is written.
func TestCache_FlushWritesUseKeptDuringRevoke(t *testing.T) {
	ctx := t.Context()
	errDisk := errors.New("disk full")
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var now atomic.Int64
	now.Store(t0)
	o := &Options{
		Now:           func() time.Time { return time.UnixMilli(now.Load()) },
		SweepInterval: -1, TouchInterval: time.Hour, Policy: Sliding(time.Hour, 10*time.Hour),
	}
	db, tok, h := openUncached(t, filepath.Join(t.TempDir(), "t.db"), o)

	used := t0 + 50*time.Minute.Milliseconds()
	now.Store(used)
	flushed := make(chan error, 1)
	err := deleteInFlight(db, h, func() error {
		if _, err := db.Validate(ctx, tok); err != nil {
			return err
		}
		go func() { flushed <- db.Flush(ctx) }()
		// Until the flush has listed the uses: queued behind this
		// transaction, or (with nothing listed) done.
		for db.commit.nqueued.Load() == 0 && len(flushed) == 0 {
			runtime.Gosched()
		}
		return errDisk
	})
	require.ErrorIs(t, err, errDisk)
	require.NoError(t, <-flushed)
	assert.Equal(t, used, storedLastUse(t, db, h), "the Validate's use, held in memory when Flush was called, is written")
}

// A Validate that began before Close and notes its use while a Revoke of
// its (uncached) token is in flight, after Close began: Close's last
// flush may have listed the uses already, so Validate either says the
// store closed or its use is in the file after a reopen (as
// TestDB_Validate_RacingCloseLosesNoUse, for a use made beside a delete).
// With no lag reported during a delete, it answered valid, and the use,
// cached when the Revoke failed after that flush, was never written.
func TestCache_UseKeptDuringRevokeRacingClose(t *testing.T) {
	ctx := t.Context()
	errDisk := errors.New("disk full")
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock, armed, entered, release := pausingClock(t0)
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := Open(path, &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: clock})
	require.NoError(t, err)
	tok, _, err := db.Issue(ctx, "user", WithPolicy(Sliding(time.Hour, 0))) // not cached
	require.NoError(t, err)
	h, err := db.format.Parse(tok)
	require.NoError(t, err)
	now.Add(50 * time.Minute.Milliseconds())

	validated, closed := make(chan error, 1), make(chan error, 1)
	var verr error
	err = deleteInFlight(db, h, func() error {
		armed.Store(true)
		go func() {
			_, err := db.Validate(ctx, tok)
			validated <- err
		}()
		<-entered
		go func() { closed <- db.Close() }() // its last write waits for this transaction
		for !db.closed.Load() {
			runtime.Gosched()
		}
		close(release)
		verr = <-validated
		return errDisk
	})
	require.ErrorIs(t, err, errDisk)
	require.NoError(t, <-closed)

	now.Add(30 * time.Minute.Milliseconds()) // past the deadline of the use before
	requireUseOrClosed(t, path, clock, tok, verr, t0.Add(50*time.Minute))
}

// deleteInFlight runs a delete of h's record as revoke does it (deletes,
// committer), calling during once the delete is announced (beginDelete)
// and before it commits; during's error is the transaction's (an error:
// rolled back, the delete fails). It returns the transaction's error,
// after the delete has ended.
func deleteInFlight(db *DB, h Hash, during func() error) error {
	del := deletes{cache: db.cache}
	err := db.commit.run(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, h)
		if err != nil {
			return refuse(err)
		}
		if err := del.delete(tx, h, &rec); err != nil {
			return err
		}
		return during()
	})
	del.end()
	return err
}

// storedLastUse is the last use h's record holds in the file.
func storedLastUse(t *testing.T, db *DB, h Hash) (used int64) {
	t.Helper()
	require.NoError(t, view(db.bolt, func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, h)
		used = rec.lastUsed
		return err
	}))
	return used
}

// openUncached opens a store at path with o, closed when the test ends,
// and issues it a token that is not cached: its first Validate misses.
func openUncached(t *testing.T, path string, o *Options) (db *DB, tok string, h Hash) {
	t.Helper()
	db, err := Open(path, o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	tok, _, err = db.Issue(t.Context(), "user")
	require.NoError(t, err)
	h, err = db.format.Parse(tok)
	require.NoError(t, err)
	return db, tok, h
}
