package tokenstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
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
		c.nextIO(io+time.Duration(c.get())*perItem/2, io, 0, c.get(), c.get())
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
		c.nextIO(io+time.Duration(c.get())*perItem, io, 0, c.get(), c.get())
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

// A transaction stops taking items once its work has lasted workCap:
// the first one of a sizer that has learned nothing, whose items each
// take at least 200 µs (the workload: a sleep, whose length is a lower
// bound), is cut at the first check past the cap (every 8 items: 1.6 ms
// of work against the first cap, 1.35 ms), not after the 1,000 it was
// asked for; the sizer learns from the 8 it took.
func TestSizedTx_FirstTransactionCutAtTheCap(t *testing.T) {
	db, _ := openOnClock(t, Options{SweepInterval: -1})
	c := chunkSizer{first: 1000, lo: 1, hi: 1000}
	require.Equal(t, time.Duration(float64(sweepHold)*workShareFirst*1.5), c.workCap())
	st, err := db.sizedTx(&c, func(tx *bolt.Tx, b *txBudget) (done, wrote int, err error) {
		for done < 1000 && !b.over(done) {
			time.Sleep(200 * time.Microsecond)
			done++
		}
		return done, done, nil
	})
	require.NoError(t, err)
	assert.Equal(t, 8, st.done)
	assert.Equal(t, 1, c.seen, "a cut transaction is learned from")
	// Each item took at least 200 µs, so at most 30 fit in sweepHold: the
	// next size is what fits, at most twice the 8 taken (a first
	// transaction's bound), not a quarter of the 1,000 it asked for.
	assert.LessOrEqual(t, c.get(), 16)
}

// The sizer's lower bound is taken whatever the time: tests and tiny
// stores sweep in fixed sizes (first = lo = hi).
func TestSizedTx_LowerBoundTakenWhateverTheCap(t *testing.T) {
	db, _ := openOnClock(t, Options{SweepInterval: -1})
	c := chunkSizer{first: 20, lo: 20, hi: 20, cap: time.Nanosecond}
	st, err := db.sizedTx(&c, func(tx *bolt.Tx, b *txBudget) (done, wrote int, err error) {
		for done < 20 && !b.over(done) {
			time.Sleep(100 * time.Microsecond)
			done++
		}
		return done, done, nil
	})
	require.NoError(t, err)
	assert.Equal(t, 20, st.done)
}

// sizeLog records the items of each sweep or flush transaction, from
// their log records ("size": a sweep pass's, "uses": the flush's).
type sizeLog struct {
	mu    sync.Mutex
	sizes map[string][]int64 // by message and pass
}

func (l *sizeLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *sizeLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *sizeLog) WithGroup(string) slog.Handler            { return l }
func (l *sizeLog) Handle(_ context.Context, r slog.Record) error {
	key, n := r.Message, int64(-1)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "pass":
			key += fmt.Sprint(" ", a.Value.Int64())
		case "size", "uses":
			n = a.Value.Int64()
		}
		return true
	})
	if n >= 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.sizes == nil {
			l.sizes = map[string][]int64{}
		}
		l.sizes[key] = append(l.sizes[key], n)
	}
	return nil
}

// Cut by the cap, a sweep pass and the flush go on with the items left:
// with a cap of 1 ns, every transaction takes 8 items (the first check),
// and every token is swept, every use written, none twice.
func TestSizedTx_CutPassesGoOnWithTheRest(t *testing.T) {
	ctx := context.Background()
	log := &sizeLog{}
	db, now := openOnClock(t, Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Logger: slog.New(log)})
	// lo 8: the sizes the sizer learns never fall under the 8 items
	// the cap cuts at, so every transaction takes 8.
	cut := chunkSizer{first: 64, lo: 8, hi: 64, cap: time.Nanosecond}
	db.sweepSize.setAll(cut)
	db.flushSize = cut
	sliding := issueToUser(t, db, 60, Sliding(time.Hour, 0))
	expiring := issueToUser(t, db, 52, Absolute(time.Minute))
	now.Add(2 * time.Minute.Milliseconds())
	for _, is := range sliding {
		_, err := db.Validate(ctx, is.Token)
		require.NoError(t, err)
	}
	require.NoError(t, db.Flush(ctx))
	assert.Equal(t, []int64{8, 8, 8, 8, 8, 8, 8, 4}, log.sizes["tokenstore: flush transaction"])
	assert.Equal(t, uint64(60), db.Stats().TouchesPersisted)

	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(expiring), n)
	for pass := range sweepPassCount {
		assert.Equal(t, []int64{8, 8, 8, 8, 8, 8, 4}, log.sizes[fmt.Sprint("tokenstore: sweep transaction ", pass)], "pass %d", pass)
	}
	for _, is := range expiring {
		_, err := db.Validate(ctx, is.Token)
		assert.ErrorIs(t, err, ErrNotFound)
	}
	for _, is := range sliding {
		_, err := db.Validate(ctx, is.Token)
		require.NoError(t, err)
	}
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, problems)
}
