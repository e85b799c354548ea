package tokenstore

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// A flush transaction whose uses had gone meanwhile (their tokens revoked
// after the flush listed them) wrote nothing: a search each. Learned from,
// it made uses look free and grew the flush's size 2× a transaction, kept
// for the next flush's real writes (as for the sweep's passes:
// TestDB_Sweep_VanishedItemsTeachTheSizersNothing).
func TestDB_Flush_VanishedUsesTeachTheSizerNothing(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: flush transaction"}
	db, now := openOnClock(t, Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Logger: slog.New(h)})
	const size = 64
	db.flushSize = chunkSizer{first: size, lo: 32, hi: flushChunkMax}
	issued := issueToUser(t, db, 20*size, Sliding(time.Hour, 0))
	now.Add(time.Minute.Milliseconds())
	for _, is := range issued {
		_, err := db.Validate(ctx, is.Token)
		require.NoError(t, err)
	}
	learned := 0
	h.fn = func(n int) {
		if n == 1 { // the rest of the flush finds its tokens gone
			learned = db.flushSize.get()
			_, err := db.RevokeSubject(ctx, "user")
			require.NoError(t, err)
		}
	}
	require.NoError(t, db.Flush(ctx))
	require.Greater(t, h.n, 1)
	assert.Equal(t, learned, db.flushSize.get())
}

// flushHookedFile opens a new clockFile that holds the uses in memory
// (TouchInterval 24 h), with no background sweep, and its flush
// transactions logged to h. The caller closes db.
func flushHookedFile(t *testing.T) (f clockFile, db *DB, h *betweenTx) {
	t.Helper()
	f = newClockFile(t)
	h = &betweenTx{msg: "tokenstore: flush transaction"}
	db, err := Open(f.path, &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: f.clock, Logger: slog.New(h)})
	require.NoError(t, err)
	return f, db, h
}

// A Flush whose ctx ends between its transactions returns ctx's error and
// keeps the uses it did not write in memory: the next flush (here Close's)
// writes them, and none is lost.
func TestDB_Flush_CanceledKeepsTheRest(t *testing.T) {
	ctx := context.Background()
	f, db, h := flushHookedFile(t)
	db.flushSize = chunkSizer{first: 16, lo: 16, hi: 16}
	issued := issueToUser(t, db, 100, Sliding(time.Hour, 0))
	f.now.Add(50 * time.Minute.Milliseconds())
	for _, is := range issued {
		_, err := db.Validate(ctx, is.Token)
		require.NoError(t, err)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h.fn = func(n int) {
		if n == 2 {
			cancel()
		}
	}
	require.ErrorIs(t, db.Flush(fctx), context.Canceled)
	assert.Len(t, db.cache.dirty(), 100-32)
	h.fn = nil
	require.NoError(t, db.Close())

	f.now.Add(30 * time.Minute.Milliseconds()) // alive only by the uses written
	requireUsesKept(t, f, issued, f.t0.Add(50*time.Minute))
}

// requireUsesKept reopens f's store and checks that a sweep deletes none
// of issued and that each one's last use is used.
func requireUsesKept(t *testing.T, f clockFile, issued []Issued, used time.Time) {
	t.Helper()
	ctx := context.Background()
	db, err := Open(f.path, &Options{SweepInterval: -1, Now: f.clock})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	for i, is := range issued {
		info, err := db.Lookup(ctx, is.Token)
		require.NoError(t, err, "token %d", i)
		assert.Equal(t, used.UnixMilli(), info.LastUsedAt.UnixMilli(), "token %d", i)
	}
}

// A Validate that began before Close and records its use in memory after
// Close's last flush listed the uses: it returned the token as valid, and
// its use was never written (a sliding token then expired at its earlier
// deadline after a restart). Either the use is written or Validate says
// the store closed.
func TestDB_Validate_RacingCloseLosesNoUse(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock, armed, entered, release := pausingClock(t0)
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := Open(path, &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: clock})
	require.NoError(t, err)
	tok, _, err := db.Issue(ctx, "user", WithPolicy(Sliding(time.Hour, 0)))
	require.NoError(t, err)
	_, err = db.Lookup(ctx, tok) // cached: the Validate below answers from memory
	require.NoError(t, err)
	now.Add(50 * time.Minute.Milliseconds())
	armed.Store(true)
	validated := make(chan error)
	go func() {
		_, err := db.Validate(ctx, tok)
		validated <- err
	}()
	<-entered
	require.NoError(t, db.Close())
	close(release)
	verr := <-validated

	now.Add(30 * time.Minute.Milliseconds())
	requireUseOrClosed(t, path, clock, tok, verr, t0.Add(50*time.Minute))
}

// requireUseOrClosed checks a Validate that raced Close (its error verr):
// it said the store closed, or, after a reopen of path, the token is
// valid by the use it answered for, at used.
func requireUseOrClosed(t *testing.T, path string, clock func() time.Time, tok string, verr error, used time.Time) {
	t.Helper()
	if verr != nil {
		require.ErrorIs(t, verr, ErrClosed)
		return
	}
	db, err := Open(path, &Options{SweepInterval: -1, Now: clock})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	info, err := db.Lookup(context.Background(), tok)
	require.NoError(t, err, "valid by the use Validate answered for")
	assert.Equal(t, used.UnixMilli(), info.LastUsedAt.UnixMilli())
}

// A flush of many transactions cuts the values of each from the buffers
// the ones before it used (touchWriter.next): every token's use, each
// at its own time, is the one in the file after a reopen, none taken from
// a value written by an earlier transaction into a reused buffer.
func TestDB_Flush_ReusedBuffersKeepEveryUse(t *testing.T) {
	ctx := context.Background()
	f, db, h := flushHookedFile(t)
	const size = 300 // more than one buffer (256 values) a transaction
	db.flushSize = chunkSizer{first: size, lo: size, hi: size}
	issued := issueToUser(t, db, 8*size, Sliding(24*time.Hour, 0))
	want := make(map[string]time.Time, len(issued))
	for i, is := range issued {
		f.at(time.Minute + time.Duration(i)*time.Millisecond)
		_, err := db.Validate(ctx, is.Token)
		require.NoError(t, err)
		want[is.Token] = f.clock()
	}
	h.fn = func(int) {}
	require.NoError(t, db.Flush(ctx))
	require.GreaterOrEqual(t, h.n, 8, "one transaction per %d uses", size)
	require.NoError(t, db.Close())

	db, err := Open(f.path, &Options{SweepInterval: -1, Now: f.clock, ReadOnly: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	for _, is := range issued {
		info, err := db.Lookup(ctx, is.Token)
		require.NoError(t, err)
		require.True(t, want[is.Token].Equal(info.LastUsedAt), "token %s: stored use %v, want %v", is.Info.ID, info.LastUsedAt, want[is.Token])
	}
}

// A flush raises usedmax (the bound of every stored use that tells the
// one-read Validate whether the clock can be trusted) to the latest use
// it wrote, before 1970 too: counted from 0, it raised it to 0, above
// every use there (an upper bound still, but a looser one); and a flush
// transaction that wrote no use does not touch it.
func TestDB_Flush_UsedMaxBefore1970(t *testing.T) {
	ctx := context.Background()
	now, clock := settableClock(time.Date(1969, 6, 1, 0, 0, 0, 0, time.UTC))
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: clock})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	usedMax := func() int64 {
		var v int64
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			v = int64(beUint64(tx.Bucket(bucketMeta).Get(metaUsedMax)))
			return nil
		}))
		return v
	}
	tok, _, err := db.Issue(ctx, "user", WithPolicy(Sliding(time.Hour, 0)))
	require.NoError(t, err)
	before := usedMax()
	now.Add(time.Minute.Milliseconds())
	_, err = db.Validate(ctx, tok)
	require.NoError(t, err)
	require.NoError(t, db.Flush(ctx))
	assert.Equal(t, now.Load(), usedMax(), "usedmax is the use written (was %d)", before)
	assert.Negative(t, usedMax())
}

// pausingClock is a settableClock at t0 whose next read after armed is
// set blocks, once: entered is closed when it begins, and the read
// returns once release is closed. A Validate's clock read comes after
// its begin and before its lookup, so a test can act in between.
func pausingClock(t0 time.Time) (now *atomic.Int64, clock func() time.Time, armed *atomic.Bool, entered, release chan struct{}) {
	now, read := settableClock(t0)
	armed = new(atomic.Bool)
	entered, release = make(chan struct{}), make(chan struct{})
	clock = func() time.Time {
		if armed.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
		return read()
	}
	return now, clock, armed, entered, release
}
