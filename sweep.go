package tokenstore

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
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
	var found damage // damaged records met for the first time
	for {
		if err := ctx.Err(); err != nil {
			return total, wrap("sweep", err)
		}
		if total == 0 && !db.anyDue(now) {
			break // nothing has expired: no write transaction at all
		}
		t := time.Now()
		size := db.sweepSize.get()
		n, more, written, bad, err := db.sweepChunk(now, size)
		took := time.Since(t)
		db.sweepSize.next(took)
		db.log.Debug("tokenstore: sweep transaction", "deleted", n, "size", size, "took", took, "written", written)
		total += n
		db.forget(bad)
		found = append(found, db.damaged.addNew(bad)...)
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
	if err := found.err(); err != nil {
		// Reported once: later sweeps step over these records.
		err = wrap("sweep", err)
		db.log.Error("tokenstore: sweep skipped damaged records; run check", "deleted", total, "damaged", len(found), "err", err)
		return total, err
	}
	return total, nil
}

// sweepChunk deletes up to size tokens whose persisted deadline is at or
// before now. A token whose use in memory keeps it alive is not deleted:
// that use is written instead, which moves it out of the range.
// written is the bytes of pages the transaction wrote. A record that
// does not decode is left as it is and returned in bad; records known to
// be damaged (db.damaged) are stepped over unread.
func (db *DB) sweepChunk(now int64, size int) (deleted int, more bool, written int64, bad damage, err error) {
	var kept []touch
	gone := 0
	del := deletes{cache: db.cache}
	err = db.commit.update(func(tx *bolt.Tx) error {
		tx.OnCommit(func() {
			st := tx.Stats()
			written = st.GetPageAlloc()
		})
		kept, gone, bad = kept[:0], 0, bad[:0]
		expiry := tx.Bucket(bucketExpiry)
		var due [][]byte
		c := expiry.Cursor()
		for k, v := c.First(); k != nil && len(due) < 2*size; k, v = c.Next() {
			if len(k) != 24 || expiryKeyDeadline(k) > now {
				break
			}
			if db.damaged.has(v) {
				continue
			}
			due = append(due, slices.Clone(k), slices.Clone(v))
		}
		more = len(due) == 2*size
		for i := 0; i < len(due); i += 2 {
			k, v := due[i], due[i+1]
			if len(v) != len(Hash{}) {
				if err := expiry.Delete(k); err != nil {
					return err
				}
				continue
			}
			h := Hash(v)
			rec, err := getRecord(tx, h)
			if errors.Is(err, ErrNotFound) { // a dangling index entry
				if err := expiry.Delete(k); err != nil {
					return err
				}
				continue
			}
			if err != nil { // a damaged record costs only itself
				bad.add(h, uuid.UUID(k[8:24]), err)
				continue
			}
			if used := db.cache.lastUse(h, &rec); now < rec.policy.Deadline(rec.created, used) {
				// Alive by a use not yet written (or a stale index entry):
				// write the use and file the token under its real deadline.
				rec.lastUsed = used
				if err := errors.Join(
					tx.Bucket(bucketTokens).Put(h[:], rec.encode(nil)),
					expiry.Delete(k),
					expiry.Put(expiryKey(rec.deadline(), rec.id), h[:]),
				); err != nil {
					return err
				}
				kept = append(kept, touch{h, used})
				continue
			}
			if err := del.delete(tx, h, &rec); err != nil {
				return err
			}
			gone++
		}
		return nil
	})
	del.end()
	if err != nil {
		return 0, false, 0, bad, err
	}
	for _, t := range kept {
		db.cache.persisted(t.h, t.used)
	}
	db.ctr.swept.Add(uint64(gone))
	return gone, more, written, bad, nil
}

// anyDue reports whether a token's persisted deadline is at or before now,
// reading only the first key of the expiry index. A sweep that finds none
// writes nothing; a write transaction, even an empty one, costs an fsync.
func (db *DB) anyDue(now int64) bool {
	due := true // on an error, let the sweep's transaction report it
	_ = view(db.bolt, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketExpiry); b != nil {
			c := b.Cursor()
			k, v := c.First()
			for k != nil && db.damaged.has(v) { // stepped over: see sweepChunk
				k, v = c.Next()
			}
			due = k != nil && (len(k) != 24 || expiryKeyDeadline(k) <= now)
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
type chunkSizer struct{ n int }

const (
	sweepChunkFirst = 256
	sweepChunkMin   = 32
	sweepChunkMax   = 4000
)

func (c *chunkSizer) get() int {
	if c.n == 0 {
		c.n = sweepChunkFirst
	}
	return c.n
}

// next scales the size by how far the last transaction was from the
// target, by at most a factor of 2 up and 4 down at a time.
func (c *chunkSizer) next(took time.Duration) {
	n := float64(c.get()) * float64(txTarget) / float64(max(took, time.Microsecond))
	n = min(max(n, float64(c.n)/4), float64(c.n)*2)
	c.n = int(min(max(n, sweepChunkMin), sweepChunkMax))
}
