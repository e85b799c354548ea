package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// A sweep whose transactions are cut by the cap (8 items each), stopped in
// its records pass after two of them: it reports the 16 it deleted, keeps
// the rest marked, and the next sweep finishes the 36 left; the counts,
// Stats and the indexes agree with what was deleted.
func TestSizedTx_CutSweepStoppedInRecordsPass(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep transaction"}
	db, now := openOnClock(t, Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Logger: slog.New(h)})
	// lo 8: the sizes the sizer learns never fall under the 8 items
	// the cap cuts at, so every transaction takes 8.
	db.sweepSize.setAll(chunkSizer{first: 64, lo: 8, hi: 64, cap: time.Nanosecond})
	live := issueToUser(t, db, 5, Absolute(time.Hour))
	expiring := issueToUser(t, db, 52, Absolute(time.Minute))
	now.Add(2 * time.Minute.Milliseconds())
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h.fn = func(n int) {
		if n == 7+2 { // the subjects pass took 7, the records pass 2
			cancel()
		}
	}
	n, err := db.Sweep(sctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 16, n)
	assert.Equal(t, uint64(16), db.Stats().Swept)
	assert.Equal(t, int64(5+52-16), db.Stats().Tokens)
	for _, is := range expiring {
		_, err := db.Validate(ctx, is.Token)
		assert.Error(t, err)
	}
	h.fn = nil
	n, err = db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 36, n)
	assert.Equal(t, uint64(52), db.Stats().Swept)
	assert.Equal(t, int64(5), db.Stats().Tokens)
	for _, is := range live {
		_, err := db.Validate(ctx, is.Token)
		require.NoError(t, err)
	}
	for _, is := range expiring {
		_, err := db.Validate(ctx, is.Token)
		assert.ErrorIs(t, err, ErrNotFound)
	}
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// A flush whose transactions are cut by the cap (8 uses each), stopped
// after two of them, keeps the uses it did not take in memory, and a use
// noted meanwhile on a token whose use was already written is not lost:
// Close writes the rest, and after a reopen every token carries its
// latest use.
func TestSizedTx_CutFlushStoppedKeepsTheRest(t *testing.T) {
	ctx := context.Background()
	f, db, h := flushHookedFile(t)
	// lo 8: the sizes the sizer learns never fall under the 8 items
	// the cap cuts at, so every transaction takes 8.
	db.flushSize = chunkSizer{first: 64, lo: 8, hi: 64, cap: time.Nanosecond}
	issued := issueToUser(t, db, 60, Sliding(time.Hour, 0))
	f.now.Add(50 * time.Minute.Milliseconds())
	for _, is := range issued {
		_, err := db.Validate(ctx, is.Token)
		require.NoError(t, err)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h.fn = func(n int) {
		if n == 2 {
			f.now.Add(time.Minute.Milliseconds())
			for _, is := range issued {
				_, err := db.Validate(ctx, is.Token)
				require.NoError(t, err)
			}
			cancel()
		}
	}
	require.ErrorIs(t, db.Flush(fctx), context.Canceled)
	assert.Len(t, db.cache.dirty(), 60)
	assert.Equal(t, uint64(16), db.Stats().TouchesPersisted)
	h.fn = nil
	require.NoError(t, db.Close())

	f.now.Add(59 * time.Minute.Milliseconds()) // alive only by the second uses
	requireUsesKept(t, f, issued, f.t0.Add(51*time.Minute))
}

// committer.nqueued, which ends an extended transaction, is the queue's
// length whenever mu is held, and zero once every writer has returned,
// whatever mix of group members, failing members and solo calls came: a
// count left above zero would end every extension, one left below would
// let a transaction run on past a writer.
func TestCommitter_NQueuedFollowsTheQueue(t *testing.T) {
	bdb := openTestBolt(t)
	c := &committer{db: bdb}
	errOdd := errors.New("odd")
	check := func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		assert.Equal(t, int32(len(c.queue)), c.nqueued.Load())
	}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			fn := func(tx *bolt.Tx) error {
				check()
				if i%3 == 1 {
					return errOdd
				}
				return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%02d", i), []byte("v"))
			}
			var err error
			if i%4 == 0 {
				err = c.runSolo(fn)
			} else {
				err = c.run(fn)
			}
			if i%3 == 1 {
				assert.ErrorIs(t, err, errOdd)
			} else {
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	check()
	assert.Zero(t, c.nqueued.Load())
}

// Whatever the transactions it learns from (cut, extended, of zero time,
// of an hour, with a work share from none to all), a sizer's size stays
// within its bounds, its extension within [1, txExtend] (a share of 1
// makes 1/(1-share) infinite), and its work cap positive.
func TestChunkSizer_StaysInBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	d := func() time.Duration {
		switch r.IntN(5) {
		case 0:
			return 0
		case 1:
			return time.Duration(r.Int64N(int64(time.Hour)))
		default:
			return time.Duration(r.Int64N(int64(50 * time.Millisecond)))
		}
	}
	for trial := range 200 {
		c := chunkSizer{first: flushChunkFirst, lo: flushChunkMin, hi: flushChunkMax}
		if trial%2 == 0 {
			c = chunkSizer{}
		}
		_, lo, hi := c.bounds()
		for step := range 50 {
			size := c.get()
			if r.IntN(2) == 0 { // cut or extended: what it took
				size = lo + r.IntN(c.most()-lo+1)
			}
			c.nextIO(d(), d(), d(), size, size)
			g, m, w, e := c.get(), c.most(), c.workCap(), c.extension()
			if g < lo || g > hi || m < g || m > hi || w <= 0 || math.IsNaN(e) || e < 1 || e > txExtend {
				t.Fatalf("trial %d step %d: get %d most %d cap %v extension %v", trial, step, g, m, w, e)
			}
		}
	}
}

// While no writer waits, a transaction goes on past its size, as far as
// its extension allows (for a work share of 0.6, 2.5 times: 40 items for
// a size of 16); a writer that queues meanwhile ends it at the next check
// (every 8 items), but does not cut it short of its size; and the
// extension's work is capped too (workCap × extension).
func TestSizedTx_ExtendedWhileNoWriterWaits(t *testing.T) {
	db, _ := openOnClock(t, Options{SweepInterval: -1})
	for _, tc := range []struct {
		name     string
		lo       int
		cap      time.Duration
		writerAt int // the item at which a writer queues; -1: none
		want     int
	}{
		{"no writer: extended to most", 1, time.Hour, -1, 40},
		{"a writer at 20: the check at 24 ends it", 1, time.Hour, 20, 24},
		{"a writer at 4: the size, no more", 1, time.Hour, 4, 16},
		{"no writer, the extension's time spent", 16, time.Nanosecond, -1, 16},
	} {
		c := &chunkSizer{first: 16, lo: tc.lo, hi: 1000, cap: tc.cap}
		c.seen, c.share[0] = 1, 0.6
		require.InDelta(t, 2.5, c.extension(), 1e-9)
		require.Equal(t, 40, c.most())
		writer := make(chan error, 1)
		st, err := db.sizedTx(c, func(tx *bolt.Tx, b *txBudget) (done, _ int, _ error) {
			for ; done < c.most() && !b.over(done); done++ {
				if done == tc.writerAt {
					go func() { writer <- db.commit.run(func(*bolt.Tx) error { return nil }) }()
					waitQueued(t, &db.commit, 1)
				}
			}
			return done, done, nil
		})
		require.NoError(t, err, tc.name)
		if tc.writerAt >= 0 {
			require.NoError(t, <-writer, tc.name)
		}
		assert.Equal(t, tc.want, st.done, tc.name)
	}
}
