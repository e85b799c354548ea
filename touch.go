package tokenstore

import (
	"context"
	"errors"
	"slices"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// persistTouch writes h's latest in-memory use now, sharing a transaction
// with other writers.
func (db *DB) persistTouch(h Hash) error {
	var written int64
	err := db.commit.run(func(tx *bolt.Tx) error {
		written = 0
		used := db.cache.used(h)
		ok, err := writeTouch(tx, h, used)
		if ok {
			written = used
		}
		if errors.Is(err, ErrNotFound) {
			return nil // revoked meanwhile: nothing to slide
		}
		return err
	})
	if err == nil && written > 0 {
		db.cache.persisted(h, written)
		db.ctr.touchWrites.Add(1)
		db.ctr.touchesPersisted.Add(1)
	}
	return err
}

// writeTouch stores used as h's last use when it is later than the stored
// one, moving the token in the expiry index with its deadline.
func writeTouch(tx *bolt.Tx, h Hash, used int64) (bool, error) {
	rec, err := getRecord(tx, h)
	if err != nil || used <= rec.lastUsed {
		return false, err
	}
	old := rec.deadline()
	rec.lastUsed = used
	expiry := tx.Bucket(bucketExpiry)
	if d := rec.deadline(); d != old {
		if err := errors.Join(expiry.Delete(expiryKey(old, rec.id)), expiry.Put(expiryKey(d, rec.id), h[:])); err != nil {
			return false, err
		}
	}
	return true, tx.Bucket(bucketTokens).Put(h[:], rec.encode(make([]byte, 0, 64+len(rec.subject))))
}

// flushChunk bounds the last-used times written per transaction.
const flushChunk = 10000

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
		var bad damage
		err := db.commit.update(func(tx *bolt.Tx) error {
			written, bad = 0, bad[:0]
			for _, t := range chunk {
				ok, err := writeTouch(tx, t.h, t.used)
				if errors.Is(err, ErrCorrupt) { // a damaged record costs only itself
					bad.add(t.h, uuid.UUID{}, err)
					continue
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				if ok {
					written++
				}
			}
			return nil
		})
		db.forget(bad)
		if err != nil {
			return boltErr(err)
		}
		for _, t := range chunk {
			db.cache.persisted(t.h, t.used)
		}
		if fresh := db.damaged.addNew(bad); len(fresh) > 0 {
			db.log.Error("tokenstore: writing last-used times skipped damaged records; run check", "damaged", len(fresh), "err", fresh.err())
		}
		db.ctr.touchWrites.Add(1)
		db.ctr.touchesPersisted.Add(uint64(written))
	}
	return nil
}
