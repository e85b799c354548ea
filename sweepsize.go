package tokenstore

import (
	"slices"
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
// one held the writer lock (took: sizedTx's held) and the part bbolt spent
// writing pages and fsyncing (io).
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
// median little. A transaction of fewer items than the size
// asked for sizes nothing: a pass's last takes what is left.
func (c *chunkSizer) nextIO(took, io time.Duration, items int) {
	if items < c.get() {
		return
	}
	_, lo, hi := c.bounds()
	size := float64(c.get())
	i := c.seen % len(c.recent)
	c.seen++
	c.recent[i] = io
	n := min(c.seen, len(c.recent))
	fixed := slices.Min(c.recent[:n])
	fixed = min(fixed, fsyncBelieved) // slower than that is not fsync: it is the chunk
	c.perItem[i] = float64(max(took-fixed, time.Microsecond)) / size
	per := slices.Clone(c.perItem[:n])
	slices.Sort(per)
	perItem := per[len(per)/2]
	budget := max(sweepHold-fixed, txTarget/2)
	next := float64(budget) / perItem
	next = min(max(next, size/4), size*2)
	c.n = int(min(max(next, float64(lo)), float64(hi)))
}

// sizedStats is what one sizedTx transaction cost, once committed.
type sizedStats struct {
	held  time.Duration // the writer lock held: from the transaction's start to its commit
	io    time.Duration // bbolt's page writes and fsyncs (TxStats.WriteTime)
	pages int64         // pages allocated (TxStats.PageAlloc)
}

// sizedTx runs fn in a write transaction of its own, in the committer's
// queue (runSolo), and when it commits sizes sizer's next transaction by
// nextIO from it and from fn's count of the items that wrote: the sweep's
// passes and the flush go through it.
//
// The sizer learns from the time the transaction held the writer lock
// (from its start to its commit, which releases the lock before OnCommit
// runs), not from the time the call took: that includes the wait in the
// committer's queue, where runSolo puts it behind the writers that came
// during its last transaction, and charged their transaction to its items,
// shrinking its chunks whenever other writers were busy. A transaction
// rolled back wrote nothing: no io to learn from.
func (db *DB) sizedTx(sizer *chunkSizer, fn func(*bolt.Tx) (wrote int, err error)) (sizedStats, error) {
	var st sizedStats
	wrote := 0
	err := db.commit.runSolo(func(tx *bolt.Tx) error {
		start := time.Now()
		tx.OnCommit(func() {
			s := tx.Stats()
			st = sizedStats{held: time.Since(start), io: s.GetWriteTime(), pages: s.GetPageAlloc()}
		})
		var err error
		wrote, err = fn(tx)
		return err
	})
	if err == nil {
		sizer.nextIO(st.held, st.io, wrote)
	}
	return st, err
}
