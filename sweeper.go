package tokenstore

import (
	"context"
	"errors"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// loop is the store's one background goroutine, owned by Open and Close:
// it sweeps expired tokens every sweepEvery and writes pending uses every
// flushEvery (either may be ≤ 0: off). Close cancels ctx, so a long sweep
// stops between chunks, then closes stop and waits for done.
func (db *DB) loop(ctx context.Context, sweepEvery, flushEvery time.Duration) {
	defer close(db.done)
	var sweepC, flushC <-chan time.Time
	if sweepEvery > 0 {
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		sweepC = t.C
	}
	if flushEvery > 0 {
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		flushC = t.C
	}
	for {
		select {
		case <-db.stop:
			return
		case <-sweepC:
			// Sweep logs its own result; it has no caller to return to.
			_, _ = db.sweep(ctx)
		case <-flushC:
			if err := db.flush(ctx); err != nil && ctx.Err() == nil {
				db.log.Error("tokenstore: writing last-used times", "err", err)
			}
		}
	}
}

// Sweep deletes every token whose deadline has passed, in transactions of
// at most 1,000 tokens so that other writers never wait long, and returns
// how many it deleted. It stops between transactions when ctx is done,
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
		n, more, err := db.sweepChunk(now)
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

// sweepChunk deletes up to sweepChunk tokens whose persisted deadline is
// at or before now. A token whose use in memory keeps it alive is not
// deleted: that use is written instead, which moves it out of the range.
func (db *DB) sweepChunk(now int64) (deleted int, more bool, err error) {
	var gone, kept []touch
	err = db.commit.update(func(tx *bolt.Tx) error {
		gone, kept = gone[:0], kept[:0]
		expiry := tx.Bucket(bucketExpiry)
		var due [][]byte
		c := expiry.Cursor()
		for k, v := c.First(); k != nil && len(due) < 2*sweepChunk; k, v = c.Next() {
			if len(k) != 24 || expiryKeyDeadline(k) > now {
				break
			}
			due = append(due, slices.Clone(k), slices.Clone(v))
		}
		more = len(due) == 2*sweepChunk
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
			if err != nil {
				return err
			}
			if used := max(rec.lastUsed, db.cache.used(h)); now < rec.policy.Deadline(rec.created, used) {
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
			if err := deleteRecord(tx, h, &rec); err != nil {
				return err
			}
			gone = append(gone, touch{h: h})
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	for _, t := range gone {
		db.cache.invalidate(t.h)
	}
	for _, t := range kept {
		db.cache.persisted(t.h, t.used, db.cacheLimit)
	}
	db.ctr.swept.Add(uint64(len(gone)))
	return len(gone), more, nil
}

// flush writes every use held only in memory, sorted by key and in chunks
// of flushChunk: bbolt's cost for many unsorted inserts in one transaction
// grows faster than their number (one 100k-touch transaction made Close
// take 9 s; sorted 10k chunks took 0.8 s).
func (db *DB) flush(ctx context.Context) error {
	db.flushMu.Lock()
	defer db.flushMu.Unlock()
	pending := db.cache.dirty()
	slices.SortFunc(pending, func(a, b touch) int { return compareBytes(a.h[:], b.h[:]) })
	for len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := pending[:min(len(pending), flushChunk)]
		pending = pending[len(chunk):]
		written := 0
		err := db.commit.update(func(tx *bolt.Tx) error {
			written = 0
			for _, t := range chunk {
				ok, err := writeTouch(tx, t.h, t.used)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				if ok {
					written++
				}
			}
			return nil
		})
		if err != nil {
			return boltErr(err)
		}
		for _, t := range chunk {
			db.cache.persisted(t.h, t.used, db.cacheLimit)
		}
		db.ctr.touchWrites.Add(1)
		db.ctr.touchesPersisted.Add(uint64(written))
	}
	return nil
}
