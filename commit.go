package tokenstore

import (
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// committer gives concurrent writers a group commit: while one fsync'd
// transaction is in flight, later callers queue; when it ends, the first
// of them becomes the leader and commits everything queued in one
// transaction. A lone caller commits at once, with no timer: bbolt's own
// db.Batch waits MaxBatchDelay (10 ms by default) before committing a
// batch that is not full, which makes a serial Issue several times slower
// than a plain Update. Measured on the 1M-token benchmark file (ms/op,
// Issue/serial and Issue/parallel-64):
//
//	this committer                            1.70   0.174
//	db.Batch, defaults (10 ms, 1000)          12.7   0.330
//	db.Batch, MaxBatchDelay 1 ms              3.13   0.188
//	db.Batch, 10 ms, MaxBatchSize 64          13.1   0.131 (sized to the waiting callers)
type committer struct {
	db *bolt.DB

	// wedged is set when a write transaction failed so badly, on a damaged
	// file, that bbolt kept its writer lock: every later write, and
	// bbolt's Close, would wait for ever.
	wedged atomic.Bool

	// began counts the write transactions begun, for the tests that
	// prove a path starts none.
	began atomic.Uint64

	// reads are the read transactions kept open for Validate and Lookup:
	// each write rolls them back before it begins and makes them stale
	// once it has ended (see readTxs).
	reads readTxs

	mu      sync.Mutex
	queue   []*call
	leading bool // a leader is committing or about to
	// nqueued is len(queue), read without mu by the sweep's and the
	// flush's transactions (txBudget.over): a writer waits for them.
	nqueued atomic.Int32

	// onWait, when set (by the benchmarks, through export_test.go, before
	// any write), is told how long each call of run or runSolo waited: from
	// its enqueue to the start of the transaction that first ran it. It is
	// the wait issue 10 bounds ("no Issue waits more than 20 ms behind a
	// sweep or flush transaction"), without the call's own commit.
	onWait func(wait time.Duration, solo bool)
}

// maxGroup bounds one group transaction, so that a burst of writers does
// not build a transaction that holds the writer lock for long. With 64
// writers, Issue/parallel-64 took 0.40-0.43 ms/op at 8, 0.19-0.20 at 32,
// 0.13-0.20 at 256 (groups never exceed the waiting callers).
const maxGroup = 256

type call struct {
	fn      func(*bolt.Tx) error
	solo    bool      // runSolo's: committed in a transaction of its own
	queued  time.Time // set only for onWait
	err     error
	refused bool          // fn refused in the last run: err is its answer
	done    chan struct{} // closed once: with err set, or with lead set
	lead    bool
}

// run executes fn in a read-write transaction, possibly shared with other
// callers, and returns when that transaction is durable. fn may run more
// than once (when another fn of its group fails, the rest are retried), so
// it must set its results afresh on every run.
func (c *committer) run(fn func(*bolt.Tx) error) error {
	return c.enqueue(&call{fn: fn, done: make(chan struct{})})
}

// runSolo executes fn in a write transaction of its own, taking its turn
// in the queue of run's callers: the sweep's transactions go through it.
//
// Through update, bbolt's writer lock alone decided who wrote next, and a
// sweep that began its next transaction as soon as the last one committed
// often got the lock again before an Issue that had waited through the
// whole of the last one (sync.Mutex lets a running goroutine barge in
// until a waiter has waited 1 ms). In the queue, the callers that arrive
// while a sweep transaction commits are committed, as one group, before
// the sweep's next one: an Issue waits for at most one sweep transaction.
// Measured on Sweep/100k-of-1M-issue-wait (docs/performance.md, with the
// sweep's new sizer too): the longest Issue during the sweep 58-168 ms
// before, 23-39 ms after; over 20 ms 1.6-3.9% of Issues before, 0.3-1.1%
// after.
//
// fn runs once, and its error is returned as update returns it.
func (c *committer) runSolo(fn func(*bolt.Tx) error) error {
	return c.enqueue(&call{fn: fn, solo: true, done: make(chan struct{})})
}

func (c *committer) enqueue(me *call) error {
	if c.onWait != nil {
		me.queued = time.Now()
	}
	c.mu.Lock()
	c.queue = append(c.queue, me)
	c.nqueued.Store(int32(len(c.queue)))
	if c.leading {
		c.mu.Unlock()
		<-me.done
		if !me.lead {
			return me.err
		}
		c.mu.Lock()
	}
	c.leading = true
	n := min(len(c.queue), maxGroup)
	for i, cl := range c.queue[:n] { // a solo call is a group of its own
		if cl.solo {
			n = max(i, 1)
			break
		}
	}
	group := c.queue[:n:n]
	c.queue = append([]*call(nil), c.queue[n:]...)
	c.nqueued.Store(int32(len(c.queue)))
	c.mu.Unlock()

	c.commit(group)

	c.mu.Lock()
	if len(c.queue) > 0 {
		next := c.queue[0]
		next.lead = true
		close(next.done)
	} else {
		c.leading = false
	}
	c.mu.Unlock()
	return me.err
}

// groupRefusal is an error of a group member that wrote nothing before
// returning it (not found, expired, over the limit): the group's
// transaction goes on and commits without it. Any other error rolls the
// transaction back, and with bbolt's NoFreelistSync (see openBolt) a
// rollback rebuilds the freelist by walking the whole file: 0.5 to 1 s at
// 1M tokens, so an everyday "revoke an unknown token" must not cause one.
type groupRefusal struct{ err error }

func (r *groupRefusal) Error() string { return r.err.Error() }

// refuse marks err, returned by a group member that has written nothing,
// as a refusal.
func refuse(err error) error { return &groupRefusal{err} }

// commit runs group in one transaction. A member's refusal is its answer,
// and the others commit. When one fn fails otherwise, the transaction is
// rolled back, that caller gets its error, and the others are committed
// again without it. A failed or refusing caller is woken only once the
// others' transaction has ended: its answer may follow from their work (a
// Revoke finding nothing because a RevokeSubject before it in the group
// deleted the token), so it must not return while that work is undone.
func (c *committer) commit(group []*call) {
	if c.onWait != nil {
		// Each call's wait ends when the first transaction that runs its fn
		// begins (fn runs first thing in it: update, and the loop below).
		var start time.Time
		calls, waits := slices.Clone(group), make([]time.Duration, len(group))
		for i, cl := range calls {
			fn := cl.fn
			cl.fn = func(tx *bolt.Tx) error {
				if start.IsZero() {
					start = time.Now()
				}
				if waits[i] == 0 {
					waits[i] = max(start.Sub(cl.queued), 1)
				}
				return fn(tx)
			}
		}
		defer func() {
			for i, w := range waits {
				if w > 0 {
					c.onWait(w, calls[i].solo)
				}
			}
		}()
	}
	if len(group) == 1 && group[0].solo {
		group[0].err = c.update(group[0].fn)
		group[0].finish()
		return
	}
	var failed []*call
	defer func() {
		for _, cl := range failed {
			cl.finish()
		}
	}()
	for len(group) > 0 {
		bad := -1
		err := c.update(func(tx *bolt.Tx) error {
			for i, cl := range group {
				err := cl.fn(tx)
				cl.refused = false
				if r, ok := err.(*groupRefusal); ok {
					cl.err, cl.refused = r.err, true
					continue
				}
				if err != nil {
					bad = i
					cl.err = err
					return errGroupMember
				}
			}
			return nil
		})
		if bad < 0 || !errors.Is(err, errGroupMember) { // committed, or the commit itself failed
			for _, cl := range group {
				if err != nil || !cl.refused {
					cl.err = err // the commit's outcome
				}
				cl.finish()
			}
			return
		}
		failed = append(failed, group[bad])
		group = append(group[:bad:bad], group[bad+1:]...)
	}
}

var errGroupMember = errors.New("tokenstore: group member failed")

// errWedged is returned by every write after one left bbolt's writer lock
// held (see committer.wedged).
var errWedged = fmt.Errorf("%w: an earlier write failed on a damaged page and left the file locked; reopen the store", ErrCorrupt)

// update runs fn in a write transaction of its own, turning panics into
// ErrCorrupt as [view] does. When bbolt panics on a damaged file inside
// Commit, its own rollback can panic too, half way, with its writer lock
// still held; update then marks the committer wedged, so that later writes
// fail at once instead of waiting for that lock for ever.
func (c *committer) update(fn func(*bolt.Tx) error) (err error) {
	if c.wedged.Load() {
		return errWedged
	}
	defer recoverCorrupt(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	c.reads.writeBegin()
	defer c.reads.writeEnd() // after the transaction, panics included
	tx, err := c.db.Begin(true)
	if err != nil {
		return err
	}
	c.began.Add(1)
	tune(tx)
	defer func() {
		if r := recover(); r != nil {
			if !rollbackAfterPanic(tx) {
				c.wedged.Store(true)
			}
			panic(r) // for recoverCorrupt
		}
	}()
	if err := fn(tx); err != nil {
		if sound := pagesSound(c.db); sound != nil {
			// Rolling back would walk the damaged pages in a goroutine
			// no recover reaches: keep the writer lock instead.
			c.wedged.Store(true)
			return errors.Join(err, sound)
		}
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// rollbackAfterPanic rolls tx back and reports whether bbolt got through
// it (and so released its writer lock).
func rollbackAfterPanic(tx *bolt.Tx) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_ = tx.Rollback()
	return true
}

// finish wakes a follower; the leader's own call needs no wake-up.
func (cl *call) finish() {
	if !cl.lead {
		close(cl.done)
	}
}
