package tokenstore

import (
	"context"
	"errors"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sweep deletes every token whose deadline has passed, in transactions
// sized to last about 10 ms each so that other writers never wait long, and
// returns how many it deleted. It stops between transactions when ctx is done,
// returning the count so far and ctx's error. The background sweeper runs
// the same pass every Options.SweepInterval.
//
// Its cost follows the expired tokens, not the file: it walks an index
// ordered by deadline from its start to now.
func (db *DB) Sweep(ctx context.Context) (int, error) {
	if err := db.begin(ctx, true); err != nil {
		return 0, wrap("sweep", err)
	}
	return db.sweep(ctx)
}

func (db *DB) sweep(ctx context.Context) (int, error) {
	db.sweepMu.Lock()
	defer db.sweepMu.Unlock()
	start := time.Now()
	now := db.nowMs()
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, wrap("sweep", err)
		}
		if total == 0 && !db.anyDue(now) {
			return 0, nil // nothing has expired: no write transaction at all
		}
		t := time.Now()
		size := db.sweepSize.get()
		n, more, written, err := db.sweepChunk(now, size)
		took := time.Since(t)
		db.sweepSize.next(took)
		db.log.Debug("tokenstore: sweep transaction", "deleted", n, "size", size, "took", took, "written", written)
		total += n
		if err != nil {
			err = wrap("sweep", boltErr(err))
			db.log.Error("tokenstore: sweep failed", "deleted", total, "err", err)
			return total, err
		}
		if !more {
			break
		}
	}
	if total > 0 {
		db.log.Info("tokenstore: swept expired tokens", "deleted", total, "took", time.Since(start))
	}
	return total, nil
}

// sweepChunk handles up to size expiry entries filed at or before now.
// An entry's deadline is a lower bound (bucket.go): a token whose uses,
// stored or in memory, keep it alive is re-filed under its real deadline
// (its use in memory written with it); the others are deleted.
// written is the bytes of pages the transaction wrote.
func (db *DB) sweepChunk(now int64, size int) (deleted int, more bool, written int64, err error) {
	var kept []touch
	gone := 0
	del := deletes{cache: db.cache}
	err = db.commit.update(func(tx *bolt.Tx) error {
		tx.OnCommit(func() {
			st := tx.Stats()
			written = st.GetPageAlloc()
		})
		kept, gone = kept[:0], 0
		expiry, ids := tx.Bucket(bucketExpiry), tx.Bucket(bucketIDs)
		var due [][]byte
		c := expiry.Cursor()
		for k, _ := c.First(); k != nil && len(due) < size; k, _ = c.Next() {
			if len(k) == expiryKeyLen && expiryKeyDeadline(k) > now {
				break
			}
			due = append(due, slices.Clone(k))
		}
		more = len(due) == size
		for _, k := range due {
			var e idEntry
			err := ErrNotFound
			if len(k) == expiryKeyLen {
				if v := ids.Get(k[8:]); v != nil {
					e, err = decodeIDValue(v)
				}
			}
			if err == nil && e.filed != expiryKeyDeadline(k) {
				err = ErrNotFound // not the token's entry: a leftover
			}
			var rec record
			if err == nil {
				rec, err = getRecord(tx, e.h)
			}
			if errors.Is(err, ErrNotFound) { // a dangling index entry
				if err := expiry.Delete(k); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			used := db.cache.lastUse(e.h, &rec)
			if d := rec.policy.Deadline(rec.created, used); now < d {
				// Alive by a use since it was filed: file it under its
				// real deadline, and write the use with it.
				if err := errors.Join(
					expiry.Delete(k),
					expiry.Put(expiryKey(d, rec.id), []byte{}),
					ids.Put(rec.id[:], idValue(e.h, used, d)),
				); err != nil {
					return err
				}
				kept = append(kept, touch{e.h, rec.id, used})
				continue
			}
			if err := del.delete(tx, e.h, &rec); err != nil {
				return err
			}
			gone++
		}
		return nil
	})
	del.end()
	if err != nil {
		return 0, false, 0, err
	}
	for _, t := range kept {
		db.cache.persisted(t.h, t.used)
	}
	db.ctr.swept.Add(uint64(gone))
	return gone, more, written, nil
}

// anyDue reports whether a token's persisted deadline is at or before now,
// reading only the first key of the expiry index. A sweep that finds none
// writes nothing; a write transaction, even an empty one, costs an fsync.
func (db *DB) anyDue(now int64) bool {
	due := true // on an error, let the sweep's transaction report it
	_ = view(db.bolt, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketExpiry); b != nil {
			k, _ := b.Cursor().First()
			due = k != nil && (len(k) != expiryKeyLen || expiryKeyDeadline(k) <= now)
		}
		return nil
	})
	return due
}

// txTarget is how long one sweep transaction should hold bbolt's single
// writer lock, which every Issue, Revoke and use written waits for.
const txTarget = 8 * time.Millisecond

// chunkSizer picks how many tokens the next sweep transaction takes, so
// that it lasts about txTarget: the cost of a token is not a constant.
// Among 10,000 tokens the ones a transaction deletes share their pages;
// among 1,000,000 each rewrites pages of its own (its record and its
// subject entry sit at random places in two B+trees, and bbolt copies a
// whole 4 KB leaf and its branches for one deleted key), and the disk
// decides the rest. Measured on 1M tokens (Sweep/10k-of-1M, 2 runs each):
//
//	fixed 1,000 per tx:    0.60-0.75 s, 91% of transactions over 20 ms, p99 73-106 ms, 7.2 KB written per token
//	sized for 15 ms:       1.0-1.4 s,   3-9% over 20 ms,  p99 31-33 ms, 9.5 KB/token
//	sized for 8 ms (now):  1.6 s,       0.5-1% over 20 ms, p99 17-22 ms, 10.8 KB/token
//
// Smaller transactions rewrite shared branch pages more often, so a sweep
// takes longer in all; it runs in the background, and writers waiting
// behind it is what users feel. The size is kept between sweeps; it is
// only used under sweepMu.
//
// The flush uses one too (flushSize): a use written costs far less than a
// token deleted, so its bounds are higher.
//
// A transaction's time is a fixed part (its commit's two fsyncs: 5 to
// 15 ms on the shared benchmark machine) plus a part that grows with its
// size. Scaled on the whole time, a flush whose fsyncs alone took over
// txTarget shrank to its minimum chunk and stayed there: 100,000 uses in
// 780 transactions, 10 s. So the sizer takes the shortest of the recent
// transactions as the fixed part and sizes the rest to fill the target,
// or half of it when the fixed part alone exceeds it: a transaction then
// holds the writer lock for its fsyncs plus about 4 ms. A fixed part over
// 2 × txTarget is not believed.
type chunkSizer struct {
	n             int
	first, lo, hi int // zero: the sweep's
	recent        [16]time.Duration
	seen          int
}

const (
	sweepChunkFirst = 256
	sweepChunkMin   = 32
	sweepChunkMax   = 4000

	flushChunkFirst = 2048
	flushChunkMin   = 128
	flushChunkMax   = 32768
)

func (c *chunkSizer) bounds() (first, lo, hi int) {
	if c.hi == 0 {
		return sweepChunkFirst, sweepChunkMin, sweepChunkMax
	}
	return c.first, c.lo, c.hi
}

func (c *chunkSizer) get() int {
	if c.n == 0 {
		c.n, _, _ = c.bounds()
	}
	return c.n
}

// next sizes the next transaction from the last one's time, by at most a
// factor of 2 up and 4 down at a time.
func (c *chunkSizer) next(took time.Duration) {
	_, lo, hi := c.bounds()
	size := float64(c.get())
	c.recent[c.seen%len(c.recent)] = took
	c.seen++
	fixed := took
	for _, d := range c.recent[:min(c.seen, len(c.recent))] {
		fixed = min(fixed, d)
	}
	fixed = min(fixed, 2*txTarget) // slower than that is not fsync: it is the chunk
	budget := max(txTarget-fixed, txTarget/2)
	perItem := float64(max(took-fixed, time.Microsecond)) / size
	n := float64(budget) / perItem
	n = min(max(n, size/4), size*2)
	c.n = int(min(max(n, float64(lo)), float64(hi)))
}
