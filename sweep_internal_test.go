package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

// issueToUser issues n tokens of policy p to "user" in one batch.
func issueToUser(t *testing.T, db *DB, n int, p Policy) []Issued {
	t.Helper()
	reqs := make([]IssueRequest, n)
	for i := range reqs {
		reqs[i] = IssueRequest{Subject: "user", Policy: p}
	}
	issued, err := db.IssueBatch(context.Background(), reqs)
	require.NoError(t, err)
	return issued
}

func TestChunkSizer_NextIO_Bounds(t *testing.T) {
	c := chunkSizer{first: 256, lo: sweepChunkMin, hi: sweepChunkMax}
	assert.Equal(t, 256, c.get())

	c.nextIO(sweepHold/10, 0, 0, c.get(), c.get()) // far under the target: at most doubles
	assert.Equal(t, 512, c.get())
	n := c.get()
	c.nextIO(100*sweepHold, 0, 0, c.get(), c.get()) // far over: at most a quarter
	assert.Equal(t, n/4, c.get())

	for range 20 {
		c.nextIO(time.Hour, 0, 0, c.get(), c.get())
	}
	assert.Equal(t, sweepChunkMin, c.get(), "never under the minimum")
	for range 40 {
		c.nextIO(0, 0, 0, c.get(), c.get())
	}
	assert.Equal(t, sweepChunkMax, c.get(), "never over the maximum")
}

// A sweep that finds nothing due commits nothing: no fsync on an idle
// store every SweepInterval.
func TestDB_Sweep_NothingDueWritesNothing(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1})
	require.NoError(t, err)
	defer db.Close()
	_, _, err = db.Issue(context.Background(), "alice")
	require.NoError(t, err)
	txid := func() (id int) {
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }))
		return id
	}
	before := txid()
	n, err := db.Sweep(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, before, txid())
}

// cancelAfter is a slog handler that cancels a context after n sweep
// transactions: a betweenTx (sweep_race_internal_test.go).
func cancelAfter(n int, cancel context.CancelFunc) *betweenTx {
	return &betweenTx{msg: "tokenstore: sweep transaction", fn: func(i int) {
		if i == n {
			cancel()
		}
	}}
}

// A sweep cut short after any of its transactions (Close, a crash, ctx)
// leaves a file that every reader and Check accept, where no expired
// token is valid and no live one is touched; the next sweep finishes.
func TestDB_Sweep_CutShortAnywhere(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	now, clock := settableClock(t0)
	db, err := Open(src, &Options{SweepInterval: -1, Now: clock})
	require.NoError(t, err)
	var reqs []IssueRequest
	for i := range 40 {
		p := Absolute(time.Hour)
		if i%4 == 0 {
			p = Absolute(48 * time.Hour) // live after the sweep
		}
		if i%4 == 1 {
			p = Sliding(150*time.Minute, 0) // used below: due by its filed deadline, alive by its use: re-filed
		}
		reqs = append(reqs, IssueRequest{Subject: fmt.Sprintf("user-%d", i%5), Policy: p})
	}
	issued, err := db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	now.Add((50 * time.Minute).Milliseconds())
	for i, is := range issued {
		if i%4 == 1 {
			_, err := db.Validate(ctx, is.Token)
			require.NoError(t, err)
		}
	}
	require.NoError(t, db.Close()) // the uses are written
	now.Add((2 * time.Hour).Milliseconds())

	for cut := 1; ; cut++ {
		path := filepath.Join(dir, fmt.Sprintf("cut-%d.db", cut))
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, data, 0o600))
		sctx, cancel := context.WithCancel(ctx)
		db, err := Open(path, &Options{SweepInterval: -1, Now: clock, Logger: slog.New(cancelAfter(cut, cancel))})
		require.NoError(t, err)
		db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
		n1, err := db.Sweep(sctx)
		cancel()
		finished := err == nil
		if !finished {
			require.ErrorIs(t, err, context.Canceled)
		}
		problems, err := db.Check(ctx)
		require.NoError(t, err)
		require.Empty(t, problems, "cut after %d transactions", cut)
		for i, is := range issued {
			info, err := db.Validate(ctx, is.Token)
			if i%4 == 0 || i%4 == 1 {
				require.NoError(t, err, "token %d, cut %d", i, cut)
				continue
			}
			if !errors.Is(err, ErrNotFound) {
				require.ErrorIs(t, err, ErrExpired, "token %d, cut %d: %v", i, cut, info)
			}
			_, err = db.Get(ctx, is.Info.ID)
			if !errors.Is(err, ErrNotFound) {
				require.ErrorIs(t, err, ErrExpired, "token %d, cut %d", i, cut)
			}
		}
		for s := range 5 {
			_, err := db.List(ctx, fmt.Sprintf("user-%d", s))
			require.NoError(t, err)
		}
		require.NoError(t, db.ForEach(ctx, func(Info) error { return nil }))
		n2, err := db.Sweep(ctx)
		require.NoError(t, err)
		assert.Equal(t, 20, n1+n2, "cut %d: every expired token swept once", cut)
		problems, err = db.Check(ctx)
		require.NoError(t, err)
		require.Empty(t, problems)
		assert.Equal(t, int64(20), db.Stats().Tokens)
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			assert.Nil(t, tx.Bucket(bucketMeta).Get(metaSweeping), "the sweep is whole again")
			return nil
		}))
		require.NoError(t, db.Close())
		if finished {
			t.Logf("a sweep of 20 expired and 10 re-filed tokens: %d transactions", cut-1)
			break
		}
	}
}

// A sweep reads what is due in pieces and works in rounds: with tiny
// pieces and rounds it deletes the same tokens.
func TestDB_Sweep_ScanInPiecesAndRounds(t *testing.T) {
	defer func(tx, max int) { sweepScanTx, sweepScanMax = tx, max }(sweepScanTx, sweepScanMax)
	sweepScanTx, sweepScanMax = 3, 7
	ctx := context.Background()
	db, now := openOnClock(t, Options{SweepInterval: -1})
	var reqs []IssueRequest
	for i := range 50 {
		p := Absolute(time.Hour)
		if i%5 == 0 {
			p = Absolute(3 * time.Hour)
		}
		reqs = append(reqs, IssueRequest{Subject: fmt.Sprintf("s%d", i%3), Policy: p})
	}
	_, err := db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	now.Add((2 * time.Hour).Milliseconds())
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 40, n)
	assert.Equal(t, int64(10), db.Stats().Tokens)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// Close while the background sweep waits in the committer's queue behind
// another writer's transaction: Close waits for that transaction, then
// for the sweep, which stops between its transactions; no goroutine is
// left, and the file it leaves is whole (Check) and swept by the next
// sweep, which deletes what the cut one did not: every expired token
// once.
func TestDB_Close_SweepQueued(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	defer goleak.VerifyNone(t, ignore)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	now, clock := settableClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	// The sweeper's ticker is the only real time here: it starts rounds,
	// and the test waits for the round to queue, not for the time.
	db, err := Open(path, &Options{SweepInterval: time.Millisecond, Now: clock})
	require.NoError(t, err)
	db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
	var reqs []IssueRequest
	for i := range 40 {
		p := Absolute(time.Hour)
		if i%4 == 0 {
			p = Absolute(48 * time.Hour)
		}
		reqs = append(reqs, IssueRequest{Subject: fmt.Sprintf("user-%d", i%5), Policy: p})
	}
	_, err = db.IssueBatch(ctx, reqs)
	require.NoError(t, err)

	release := make(chan struct{})
	writer := make(chan error)
	go func() {
		writer <- db.commit.run(func(*bolt.Tx) error { <-release; return nil })
	}()
	waitLeading(t, &db.commit)
	now.Add(2 * time.Hour.Milliseconds()) // 30 due: the sweeper's next round queues behind the writer
	waitQueued(t, &db.commit, 1)
	closed := make(chan error)
	go func() { closed <- db.Close() }()
	for !db.closed.Load() {
		runtime.Gosched()
	}
	close(release)
	require.NoError(t, <-writer)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(30 * time.Second): // a deadlock detector, not a wait
		t.Fatal("Close did not return")
	}

	db, err = Open(path, &Options{SweepInterval: -1, Now: clock})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	before := db.Stats().Tokens
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, int(before)-10, n, "what the cut sweep left")
	assert.Equal(t, int64(10), db.Stats().Tokens)
	problems, err = db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// A sweep transaction that fails deleted nothing, and the count the sweep
// returns with its error says so: runSolo runs fn once, so the count it
// had reached in the rolled-back transaction stayed.
func TestDB_SweepPass_FailedTransactionCountsNothing(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
	errBoom := errors.New("boom")
	items := make([]*sweepItem, 10)
	for i := range items {
		items[i] = &sweepItem{}
	}
	deleted, seen := 0, 0
	err = db.sweepPass(context.Background(), passRecords, items, func(*bolt.Tx, *sweepItem) (bool, error) {
		if seen++; seen == 7 { // the second transaction's third item
			return false, errBoom
		}
		deleted++
		return true, nil
	}, func(*bolt.Tx) error { return nil }, &deleted)
	require.ErrorIs(t, err, errBoom)
	assert.Equal(t, 4, deleted, "the first transaction's, not the rolled-back second's")
}

// A caller's Sweep waits for a sweep already running (the background
// one) only as long as its ctx lets it: it held an unconditional mutex,
// so a Sweep with a deadline could outlive its deadline by a whole
// background sweep.
func TestSweep_WaitEndsWithCtx(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	db.sweeping <- struct{}{} // a sweep is running
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	n, err := db.sweep(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, n)
	<-db.sweeping // it ends; the next sweep runs
	_, err = db.Sweep(t.Context())
	require.NoError(t, err)
}

// Stats.Swept counts every record a sweep deleted, also those of a sweep
// cut short: the next sweep finds their records gone and does not count
// them again, so a count kept only for whole sweeps lost them for good.
func TestDB_Sweep_CutShortCountsItsDeletes(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock := settableClock(t0)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, Now: clock, Logger: slog.New(cancelAfter(3, cancel))})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	issueToUser(t, db, 8, Absolute(time.Hour))
	now.Add((2 * time.Hour).Milliseconds())
	db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
	n1, err := db.Sweep(sctx) // subjects (2 transactions), then half the records
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 4, n1)
	n2, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 8, n1+n2)
	st := db.Stats()
	assert.Equal(t, uint64(8), st.Swept, "the cut sweep's deletes counted too")
	assert.Zero(t, st.Tokens)
}

// settableClock is an Options.Now that reads *now (ms), starting at t0:
// the test moves it with now.Store and now.Add.
func settableClock(t0 time.Time) (now *atomic.Int64, clock func() time.Time) {
	now = new(atomic.Int64)
	now.Store(t0.UnixMilli())
	return now, func() time.Time { return time.UnixMilli(now.Load()) }
}

// openOnClock opens a store in a new file on a settable clock
// (settableClock) at 2030-01-01 UTC, with the options o (their Now set),
// and closes it, checking Close's error, when the test ends.
func openOnClock(t *testing.T, o Options) (db *DB, now *atomic.Int64) {
	t.Helper()
	now, o.Now = settableClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db, now
}
