package tokenstore

import (
	"runtime/debug"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// readTxs keeps bbolt read transactions open between the Validates and
// Lookups that read the file, so that such a call takes one that is open
// instead of beginning and rolling back its own. Each begin and rollback
// takes bbolt's metalock (a mutex of the whole DB) and its mmaplock, and
// allocates the transaction: on a returning user's Validate of a 1M-token
// store with an empty cache, from 2 goroutines, kept transactions took
// the call from about 5 µs to 3 µs (a CPU profile showed 0.8 µs of
// begins and rollbacks: it does not count the waits for the metalock).
//
// A kept transaction is used by one call at a time (bbolt's transactions
// are not safe for concurrent use): a call takes it out of its slot and
// puts it back when done.
//
// Freshness: a call must see every write committed before it began (a
// Revoke that has returned is seen by every later Validate). gen counts
// the write transactions ended; a kept transaction carries the gen read
// before it began, and one whose gen is not the current one is rolled back
// instead of used. A write bumps gen after its transaction ends and before
// [committer.update] returns, so before anything that follows it (the
// cache's endDelete, the caller's return).
//
// Writers: bbolt's commit may remap the file, which waits for every open
// read transaction, and a write transaction's begin frees only the pages
// no open read transaction can see. So no transaction is kept idle while
// a write is in progress: writeBegin counts the write (writing) and rolls
// back every kept transaction before bbolt's Begin; a call that puts one
// back while a write is counted rolls it back instead. The put stores into
// a slot and then reads writing, the write stores writing and then empties
// the slots: one of the two sees the other (sequentially consistent
// atomics), and whichever takes the transaction out of its slot rolls it
// back. Close counts a write that never ends.
type readTxs struct {
	db      *bolt.DB
	gen     atomic.Uint64
	writing atomic.Int64
	slots   [readTxSlots]readTxSlot
}

// readTxSlots is the transactions kept at most: enough that the calls of
// a few busy cores each find one, few enough that emptying them before
// every write costs nothing that shows.
const readTxSlots = 16

// readTxSlot is padded to a cache line, so that two cores taking
// transactions from neighbouring slots do not pass one line back and
// forth.
type readTxSlot struct {
	p atomic.Pointer[readTx]
	_ [56]byte
}

type readTx struct {
	tx  *bolt.Tx
	gen uint64 // readTxs.gen before tx began
	// the tokens and ids buckets, opened on first use and kept with tx:
	// tx.Bucket opens the bucket each time, an allocation of a cold
	// Validate.
	buckets [2]*bolt.Bucket
}

// Buckets a readTx keeps open (readTx.bucket).
const (
	readTokens = iota
	readIDs
)

var readTxBuckets = [...][]byte{readTokens: bucketTokens, readIDs: bucketIDs}

// bucket is the bucket which (readTokens, readIDs) of t's transaction.
// Keys are read from it by Bucket.Get, as every write reads them, not by
// a kept cursor's Seek, which allocates less but, for a key its search
// places past the last key of a leaf, moves on to the next leaf: with a
// damaged branch key, a token then validated that Revoke could not find.
func (t *readTx) bucket(which int) *bolt.Bucket {
	b := t.buckets[which]
	if b == nil {
		b = t.tx.Bucket(readTxBuckets[which])
		t.buckets[which] = b
	}
	return b
}

// view runs fn, a read of h's token, in a kept read transaction (one is
// begun if none is free), as [view] does: bbolt's panics and faults
// become ErrCorrupt, and a transaction a panic went through is rolled
// back, never kept. The search for a free one starts at readTxHint(h), to
// spread concurrent calls.
func (r *readTxs) view(h Hash, fn func(*readTx) error) (err error) {
	defer recoverCorrupt(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	from := int(readTxHint(h))
	t, err := r.take(from)
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_ = t.tx.Rollback()
		}
	}()
	err = fn(t)
	done = true
	r.put(t, from)
	return err
}

// readTxHint is where view's search for h starts: a byte of its
// token's SHA-256, not h[0], which is the top byte of the issue time for
// every token issued since v0.1.0 (Hash) and so started every call's
// search at one slot.
func readTxHint(h Hash) byte { return h[len(h)-1] }

// take returns a kept transaction of the current gen, or a new one.
func (r *readTxs) take(from int) (*readTx, error) {
	g := r.gen.Load()
	for i := range readTxSlots {
		s := &r.slots[(from+i)%readTxSlots]
		if s.p.Load() == nil {
			continue
		}
		if t := s.p.Swap(nil); t != nil {
			if t.gen == g {
				return t, nil
			}
			_ = t.tx.Rollback() // older than a write since
		}
	}
	tx, err := r.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &readTx{tx: tx, gen: g}, nil
}

// put keeps t for a later call, or rolls it back when a write is in
// progress, one has ended since t began, or every slot is taken.
func (r *readTxs) put(t *readTx, from int) {
	if r.writing.Load() == 0 && t.gen == r.gen.Load() {
		for i := range readTxSlots {
			s := &r.slots[(from+i)%readTxSlots]
			if !s.p.CompareAndSwap(nil, t) {
				continue
			}
			if r.writing.Load() == 0 || !s.p.CompareAndSwap(t, nil) {
				return // kept, or taken by a write that rolls it back
			}
			break // a write began meanwhile and has not seen t: roll it back here
		}
	}
	_ = t.tx.Rollback()
}

// writeBegin is called before a write transaction begins: see readTxs.
func (r *readTxs) writeBegin() {
	r.writing.Add(1)
	r.drain()
}

// writeEnd is called once the write transaction has ended, committed or
// not: the kept transactions begun before are stale.
func (r *readTxs) writeEnd() {
	r.gen.Add(1)
	r.writing.Add(-1)
}

// close rolls back every kept transaction and keeps none after, so that
// bbolt's Close, which waits for open transactions, does not wait for
// ever.
func (r *readTxs) close() {
	r.writing.Add(1)
	r.drain()
}

func (r *readTxs) drain() {
	for i := range r.slots {
		if t := r.slots[i].p.Swap(nil); t != nil {
			_ = t.tx.Rollback()
		}
	}
}
