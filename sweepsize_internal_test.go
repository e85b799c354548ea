package tokenstore

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// nextIO sizes a sweep transaction to hold the writer about sweepHold in
// all, and a slow fsync now and then does not shrink the next chunks: on a
// shared disk a commit's fsyncs took 0.2 to 15 ms from one transaction to
// the next, and the sizer that charged that to the tokens (next) ran the
// records pass of a 100,000-token sweep in ~600 transactions.
func TestChunkSizer_NextIO_SlowFsyncs(t *testing.T) {
	const fsync = time.Millisecond
	const perItem = 20 * time.Microsecond // a record deleted: its share of a leaf rewritten, and the work
	want := int((sweepHold - fsync) / perItem)
	var c chunkSizer
	var sizes []int
	for i := range 64 {
		spike := time.Duration(0)
		if i%4 == 3 {
			spike = 14 * time.Millisecond // every fourth commit's fsyncs are slow
		}
		io := fsync + spike + time.Duration(c.get())*perItem/2 // pages written
		c.nextIO(io+time.Duration(c.get())*perItem/2, io, c.get())
		if i >= 32 {
			sizes = append(sizes, c.get())
		}
	}
	for _, n := range sizes {
		assert.InDelta(t, want, n, float64(want)/4, "sizes %v", sizes)
	}
}

// A disk whose fsyncs alone take about the target still gets transactions
// of some work: the fixed part is the recent commits' shortest write, and
// the work is sized to at least txTarget/2 beyond it.
func TestChunkSizer_NextIO_SlowDisk(t *testing.T) {
	const fsync = 12 * time.Millisecond
	const perItem = 10 * time.Microsecond
	var c chunkSizer
	for range 40 {
		io := fsync
		c.nextIO(io+time.Duration(c.get())*perItem, io, c.get())
	}
	took := fsync + time.Duration(c.get())*perItem
	assert.Greater(t, c.get(), sweepChunkMin)
	assert.LessOrEqual(t, took, fsync+txTarget, "size %d", c.get())
}

// A pass's last transaction takes what is left, often far fewer items
// than the sizer asked for. Sized as if it were whole, its time per item
// was the planned size's: a store that sweeps a few tokens at a time grew
// every pass's size by 2× a sweep, to sweepChunkMax, and the first large
// sweep after then ran its records pass in transactions of 16,384
// records (the same for the flush and its few uses a round, to 32,768).
// Only a transaction of the size asked for sizes the next one.
func TestDB_Sweep_SmallSweepsKeepTheSizes(t *testing.T) {
	ctx := context.Background()
	db, now := openOnClock(t, Options{SweepInterval: -1})
	for range 20 {
		var reqs []IssueRequest
		for i := range 3 {
			reqs = append(reqs, IssueRequest{Subject: fmt.Sprintf("user-%d", i), Policy: Absolute(time.Hour)})
		}
		issued, err := db.IssueBatch(ctx, reqs)
		require.NoError(t, err)
		sl, _, err := db.Issue(ctx, "reader", WithPolicy(Sliding(time.Hour, 0)))
		require.NoError(t, err)
		now.Add(time.Minute.Milliseconds())
		_, err = db.Validate(ctx, sl) // a use for the flush
		require.NoError(t, err)
		require.NoError(t, db.Flush(ctx))
		_, err = db.Validate(ctx, issued[0].Token)
		require.NoError(t, err)
		now.Add(2 * time.Hour.Milliseconds())
		n, err := db.Sweep(ctx)
		require.NoError(t, err)
		require.Equal(t, 4, n)
	}
	for pass := range db.sweepSize {
		assert.Equal(t, sweepChunkFirst, db.sweepSize[pass].get(), "pass %d", pass)
	}
	assert.Equal(t, flushChunkFirst, db.flushSize.get(), "flush")
}

// A sweep transaction waits in the committer's queue behind the writers
// that came during its last one (runSolo). The sizer learns from the time
// the transaction held the writer lock, not from the wait: charged to the
// sweep's tokens, a slow writer ahead of it shrank the sweep's next chunks.
func TestDB_Sweep_SizerIgnoresTheQueue(t *testing.T) {
	ctx := context.Background()
	db, now := openOnClock(t, Options{SweepInterval: -1})
	db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
	var reqs []IssueRequest
	for i := range 8 {
		reqs = append(reqs, IssueRequest{Subject: fmt.Sprintf("user-%d", i), Policy: Absolute(time.Hour)})
	}
	_, err := db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	now.Add(2 * time.Hour.Milliseconds())

	const slow = 300 * time.Millisecond
	release := make(chan struct{})
	writer := make(chan error)
	go func() {
		writer <- db.commit.run(func(*bolt.Tx) error {
			<-release
			time.Sleep(slow) // the workload: a writer whose transaction takes 300 ms
			return nil
		})
	}()
	waitLeading(t, &db.commit)
	swept := make(chan error)
	go func() {
		_, err := db.Sweep(ctx)
		swept <- err
	}()
	waitQueued(t, &db.commit, 1) // the sweep's first transaction waits behind the writer
	close(release)
	require.NoError(t, <-writer)
	require.NoError(t, <-swept)

	c := &db.sweepSize[passSubjects]
	first := time.Duration(c.perItem[0] * 4) // the first transaction's time above the fixed part
	assert.Less(t, first, slow, "the sizer charged the wait behind the writer to the sweep's first transaction")
}

// A transaction whose items had all gone meanwhile (revoked after the
// scan, or deleted by a sweep cut short that this one finishes) did no
// work: a miss costs a B+tree search, a delete a page rewrite. Learned
// from, it made a pass's items look free and grew its size up to 2× a
// transaction, and sizes are kept between sweeps: the next sweep's first
// transactions took thousands of real deletes where the sizer had
// measured a few hundred.
func TestDB_Sweep_VanishedItemsTeachTheSizersNothing(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep scan"}
	db, now := openOnClock(t, Options{SweepInterval: -1, Logger: slog.New(h)})
	const size = 64
	db.sweepSize.setAll(chunkSizer{first: size, lo: 32, hi: 16384})
	issued := issueToUser(t, db, 20*size, Absolute(time.Hour))
	now.Add(2 * time.Hour.Milliseconds())
	h.fn = func(int) { // after the scan, before the first delete
		n, err := db.RevokeSubject(ctx, "user")
		require.NoError(t, err)
		require.Equal(t, len(issued), n)
	}
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	require.Equal(t, 1, h.n)
	for pass := range sweepPassCount {
		assert.Equal(t, size, db.sweepSize[pass].get(), "pass %d", pass)
	}
}

// setAll gives every pass the sizer c: tests sweep in fixed sizes.
func (s *sweepSizers) setAll(c chunkSizer) {
	for i := range s {
		s[i] = c
	}
}
