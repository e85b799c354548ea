package tokenstore

import (
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sweep passes, each with its own sizer (sweepSizers): a pass's cost per
// token is its own. Deleting a subjects or ids entry of a token among its
// neighbours costs a few µs; deleting a record rewrites, for about every
// second token, a 4 KB leaf of the random-order tokens tree. One sizer for
// all four passes carried the records pass's size (a few hundred) into the
// ids and expiry passes, which then took 20 to 80 transactions to grow
// back to thousands: at ~7 ms of fsyncs each, a third of a sweep of
// 100,000 tokens among 1M.
const (
	passSubjects = iota
	passRecords
	passIDs
	passExpiry
	sweepPassCount
)

// sweepSizers sizes each pass's transactions; kept between sweeps, used
// only by the sweep holding db.sweeping.
type sweepSizers [sweepPassCount]chunkSizer

// sweepHold is how long one sweep transaction should hold bbolt's writer
// lock in all, its commit's writes and fsyncs included: an Issue that
// arrives meanwhile waits at most about that (issue 10: no Issue waits more
// than 20 ms behind a sweep). Measured on the 1M-token benchmark
// (Sweep/100k-of-1M, per transaction, from bbolt's TxStats.WriteTime, and
// strace): each of a commit's two fsyncs took 0.2 to 14 ms on this shared
// disk (median 0.9), each page written about 23 µs more, and the work in
// memory 5 to 8 µs a token.
//
// 6 ms, not the 12 it was, for the reason txTarget gives: a transaction
// that loses its core while it holds the lock holds it that much longer.
// Sweep/100k-of-1M (a batch issued together) took 0.45-0.49 s either way,
// in 54-57 transactions instead of 48. The flush sizes by it too.
const sweepHold = 6 * time.Millisecond

// nextIO sizes the next sweep or flush transaction from the time the last
// one held the writer lock (took: sizedTx's held), the part bbolt spent
// writing pages and fsyncing (io), the part its own work took before the
// commit (work: see workCap), the items that wrote, and the transaction's
// size: the size asked for, or the items it took before workCap cut it.
//
// The sizer before it (next, since removed) took the shortest recent
// transaction as the fixed part and charged everything above it to the
// tokens: on a shared disk whose fsyncs jumped from 2 to 15 ms from one
// commit to the next, each slow fsync shrank the next chunk by up to 4×,
// and the records pass of a 100,000-token sweep ran in ~600 transactions
// of ~170 tokens, each mostly fsync, on two loaded runs (5.9 and 6.8 s;
// 198 transactions, 2.0 s, on a calmer one). Alternated with it on the
// same fixture, nextIO took 170-225 transactions for the whole sweep
// against 161-326 (docs/performance.md); under heavy load both took
// 370-600 for the records pass. nextIO takes the
// fixed part from the io of the recent transactions (their shortest: the
// fsyncs with few pages), and the cost of a token as the median of the
// recent transactions' (took - fixed) / size: one slow fsync moves the
// median little. A transaction in which fewer items wrote than it took
// sizes nothing (see sweepPass), nor does one of fewer items than asked
// for that workCap did not cut: a pass's last takes what is left.
func (c *chunkSizer) nextIO(took, io, work time.Duration, items, size int) {
	if items < size || size <= 0 {
		return
	}
	_, lo, hi := c.bounds()
	i := c.seen % len(c.recent)
	c.seen++
	c.recent[i] = io
	n := min(c.seen, len(c.recent))
	fixed := c.fixed()
	above := max(took-fixed, time.Microsecond)
	c.perItem[i] = float64(above) / float64(size)
	c.share[i] = min(max(float64(work)/float64(above), 0.05), 1)
	perItem := median(c.perItem[:n])
	budget := max(sweepHold-fixed, txTarget/2)
	next := float64(budget) / perItem
	// Bounded by the size asked for, not by what a cut transaction took:
	// cut at the lower bound by a garbage collection beside it, a flush
	// of 890 uses a transaction went on at 256, 512, 1,024. Not the first
	// transaction's: it asked for the most (sweepChunkFirst), a guess,
	// and bounded by a quarter of that the next ones were cut by workCap
	// until the median caught up.
	asked := float64(c.get())
	if c.seen == 1 {
		asked = float64(size)
	}
	next = min(max(next, asked/4), asked*2)
	c.n = int(min(max(next, float64(lo)), float64(hi)))
}

// workCap is how long the next transaction's own work (its deletes or
// puts, before the commit) may take before it takes no more items: the
// part of sweepHold left after the recent commits' fixed part that the
// recent transactions' work took (their median share), with half as much
// again to spare, so that a transaction sized by nextIO is rarely cut
// (with a quarter, 14% of a flush's transactions were).
// Before any transaction has been learned from, a share of workShareFirst.
//
// Sized by items alone, the first transactions guessed: a flush's first
// transaction of flushChunkFirst (2,048) uses, on a freshly opened store
// of 1M tokens, held the writer lock 16.7 ms where the next ones, sized
// from it, held 5 to 6, and with a garbage collection beside it an Issue
// waited over 20 ms behind it (Flush/100k-of-1M-issue-wait, with the
// collector off: 1 wait over 20 ms, 20.7 ms, in each of two runs, both
// this one). Started small instead, each sweep pass took six
// transactions, each with its commit's two fsyncs, to grow from 256
// deletes to thousands. With the cap, a first transaction may ask for
// many and takes what its time allows.
func (c *chunkSizer) workCap() time.Duration {
	if c.cap > 0 {
		return c.cap
	}
	budget := max(sweepHold-c.fixed(), txTarget/2)
	return time.Duration(float64(budget) * c.workShare() * 1.5)
}

// fixed is the part of a transaction's time that does not grow with its
// items: the shortest io of the recent transactions (their fsyncs with
// few pages), at most fsyncBelieved (slower than that is not fsync: it is
// the chunk); 0 before any.
func (c *chunkSizer) fixed() time.Duration {
	n := min(c.seen, len(c.recent))
	if n == 0 {
		return 0
	}
	return min(slices.Min(c.recent[:n]), fsyncBelieved)
}

// workShareFirst is the share of a transaction's time above its fixed
// part that its work is believed to take before one has been measured:
// the flush's first transaction on a freshly opened store of 1M tokens,
// its work cut at 0.4 of sweepHold, took 2,368 uses and held the lock 24
// ms, 19 of them writing the leaves those uses touched; at 0.15, 968 uses
// and 13 ms.
const workShareFirst = 0.15

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// sizedStats is what one sizedTx transaction cost, once committed.
type sizedStats struct {
	held  time.Duration // the writer lock held: from the transaction's start to its commit
	io    time.Duration // bbolt's page writes and fsyncs (TxStats.WriteTime)
	pages int64         // pages allocated (TxStats.PageAlloc)
	done  int           // the items fn took (txBudget.over)
}

// txBudget tells a sizedTx transaction's loop when to take no more items:
// once it has taken the sizer's lower bound and its work has lasted
// workCap (checked every 8 items; time.Now is not free).
type txBudget struct {
	start   time.Time
	cap     time.Duration
	lo, n   int           // the sizer's lower bound, and the size it asked for
	ext     float64       // the sizer's extension
	waiting *atomic.Int32 // writers queued behind the transaction (committer.nqueued)
	cut     bool
}

// extension is how many times its size, and its work cap, the next
// transaction may take while no writer waits for it (txBudget.over): as
// many as keep the commit of an extended transaction about as long as a
// whole transaction of its size (sweepHold), at most txExtend. A writer
// that comes meanwhile ends the extension at the next check, and then
// waits for that commit: about what it waits behind a transaction that
// is not extended.
//
// Each commit costs two fsyncs, and on the benchmark machine every fsync,
// from whichever process, slows the Validates running beside it on the
// other core (Store/Interference): a sweep of 100,000 tokens among 1M in
// 61-66 transactions slowed 732-1,115 of them, in 41-51 transactions
// 434-602. The batch sweep's deletes of neighbours spend most of a
// transaction in its work (a share of 0.6: extended 2.5 times), the
// flush's scattered uses most in the commit (0.15-0.3: 1.2-1.4 times).
// Extended 3 times whatever its share, a flush had an Issue that came
// late wait for its commit over 20 ms three times in two flushes
// (Flush/100k-of-1M-issue-wait, against once), and a scattered sweep
// held the lock 56 ms.
func (c *chunkSizer) extension() float64 {
	return min(txExtend, 1/(1-c.workShare()))
}

const txExtend = 3

// workShare is the median share of the recent transactions' time above
// the fixed part that their work took, workShareFirst before any.
func (c *chunkSizer) workShare() float64 {
	if n := min(c.seen, len(c.recent)); n > 0 {
		return median(c.share[:n])
	}
	return workShareFirst
}

// over reports whether the loop, having taken i items, should stop.
func (b *txBudget) over(i int) bool {
	if i < b.lo || i%8 != 0 {
		return false
	}
	limit := b.cap
	if i >= b.n {
		if b.waiting.Load() > 0 {
			b.cut = true
			return true
		}
		limit = time.Duration(float64(limit) * b.ext)
	}
	if time.Since(b.start) < limit {
		return false
	}
	b.cut = true
	return true
}

// sizedTx runs fn in a write transaction of its own, in the committer's
// queue (runSolo), and when it commits sizes sizer's next transaction by
// nextIO from it and from fn's counts of the items it took (done: it
// stops when b.over says) and of those that wrote: the sweep's passes and
// the flush go through it.
//
// The sizer learns from the time the transaction held the writer lock
// (from its start to its commit, which releases the lock before OnCommit
// runs), not from the time the call took: that includes the wait in the
// committer's queue, where runSolo puts it behind the writers that came
// during its last transaction, and charged their transaction to its items,
// shrinking its chunks whenever other writers were busy. A transaction
// rolled back wrote nothing: no io to learn from.
func (db *DB) sizedTx(sizer *chunkSizer, fn func(tx *bolt.Tx, b *txBudget) (done, wrote int, err error)) (sizedStats, error) {
	var st sizedStats
	var work time.Duration
	done, wrote := 0, 0
	_, lo, _ := sizer.bounds()
	b := txBudget{cap: sizer.workCap(), lo: lo, n: sizer.get(), ext: sizer.extension(), waiting: &db.commit.nqueued}
	err := db.commit.runSolo(func(tx *bolt.Tx) error {
		b.start, b.cut = time.Now(), false
		tx.OnCommit(func() {
			s := tx.Stats()
			st = sizedStats{held: time.Since(b.start), io: s.GetWriteTime(), pages: s.GetPageAlloc()}
		})
		var err error
		done, wrote, err = fn(tx, &b)
		work = time.Since(b.start)
		return err
	})
	st.done = done
	if err == nil {
		// Learned from what it took, unless it ran out of items before
		// its size (a pass's last): nextIO then learns nothing.
		size := done
		if !b.cut && done < sizer.get() {
			size = sizer.get()
		}
		sizer.nextIO(st.held, st.io, work, wrote, size)
	}
	return st, err
}
