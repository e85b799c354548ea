package tokenstore

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Uses reach the file here. Validate records a use in the cache and
// returns; the background loop calls flush every TouchInterval/2, which
// writes every use held only in memory. A use is one ids entry rewritten
// (bucket.go): the record, the subjects and expiry indexes are not
// touched, and the uses of a flush are written in id order, so that the
// ids leaves they share are rewritten once.

// Flush writes every use held only in memory now, in transactions of
// about 6 ms each, and returns when they are durable. It pauses between
// transactions as long as each took (at most 32 ms), so that Validates
// running beside it keep most of the CPU: it takes about twice as long
// as its transactions do (about 2.5 s for 100,000 uses among 1M tokens). The background
// writer does the same every TouchInterval/2, and Close does it last; call
// Flush before a backup that must hold the latest uses. It stops between
// transactions when ctx is done; once Close has begun, it writes the rest
// without pausing (Close writes them all the same).
func (db *DB) Flush(ctx context.Context) error {
	if err := db.begin(ctx, true); err != nil {
		return wrap("flush", err)
	}
	return wrap("flush", db.flush(ctx, true))
}

// persistTouch writes h's latest in-memory use now, sharing a transaction
// with other writers: Options.FsyncReturningUses.
func (db *DB) persistTouch(h Hash) error {
	// written, not t.used > 0 or != 0: a use is any time, 0 and before
	// 1970 included (a clock set there), as a grace end is (rotate.go).
	var t touch
	var written bool
	err := db.commit.run(func(tx *bolt.Tx) error {
		written = false
		var ok bool
		if t, ok = db.cache.pending(h); !ok {
			return nil
		}
		var err error
		written, err = writeTouch(tx, t)
		if errors.Is(err, ErrNotFound) {
			written = false
			return nil // revoked meanwhile: nothing to slide
		}
		if err == nil && written {
			err = raiseUsedMax(tx, t.used)
		}
		return err
	})
	if err == nil && written {
		db.cache.persisted(h, t.used)
		db.ctr.touchWrites.Add(1)
		db.ctr.touchesPersisted.Add(1)
	}
	return err
}

// writeTouch stores t.used as the token's last use when it is later than
// the stored one: one ids entry rewritten, nothing else. The token's
// expiry entry stays where it was filed, a lower bound of its deadline
// (see the sweep). It returns ErrNotFound for a token deleted meanwhile.
func writeTouch(tx *bolt.Tx, t touch) (bool, error) {
	w := touchWriter{vals: make([]byte, 0, idValueLen)} // one value: not a flush's buffer of 256
	return w.write(tx, t)
}

// touchWriter is writeTouch for the many uses of a flush, with fewer
// allocations each (a use written allocated ten times, and a flush of
// 100,000 uses 1M times: garbage collections that Validates beside it
// paid for): one cursor for every read, and the new values cut from
// buffers. bbolt keeps a value put until its transaction ends, so a
// buffer is not reused within one: when full, the next is started, taken
// from free, the buffers of the writer's transactions that have ended
// (next). In a flush of 100,000 uses the values were a fifth of what it
// allocated, and a transaction that allocates during a garbage
// collection's mark phase does marking work, holding the writer lock the
// while.
type touchWriter struct {
	ids  *bolt.Bucket
	cur  *bolt.Cursor
	vals []byte
	used [][]byte // the buffers this transaction's values are cut from
	free [][]byte // the buffers of the writer's ended transactions
}

// next readies w for its next transaction, once the last one has ended
// (committed or not: bbolt then holds none of its values).
func (w *touchWriter) next() {
	w.free = append(w.free, w.used...)
	w.ids, w.cur, w.vals, w.used = nil, nil, nil, nil
}

func (w *touchWriter) write(tx *bolt.Tx, t touch) (bool, error) {
	if w.ids == nil {
		w.ids = tx.Bucket(bucketIDs)
		w.cur = w.ids.Cursor()
	}
	v := getAt(w.cur, t.id[:])
	if v == nil {
		return false, ErrNotFound
	}
	e, err := decodeIDValue(t.id[:], v)
	if err != nil {
		return false, err
	}
	if !e.of(t.h) {
		return false, ErrNotFound // another token's id: cannot be ours
	}
	if t.used <= e.used {
		return false, nil
	}
	if cap(w.vals)-len(w.vals) < idValueLen {
		if n := len(w.free); n > 0 {
			w.vals, w.free = w.free[n-1][:0], w.free[:n-1]
		} else {
			w.vals = make([]byte, 0, 256*idValueLen)
		}
		w.used = append(w.used, w.vals)
	}
	nv := appendIDValue(w.vals, t.id[:], t.h, t.used, e.filed)
	w.vals = w.vals[:len(w.vals)+idValueLen]
	return true, w.ids.Put(t.id[:], nv)
}

// flushPauseMax bounds a paced flush's pause between transactions: a
// transaction slowed by a slow disk's fsyncs used no CPU meanwhile.
const flushPauseMax = 8 * txTarget // 32 ms, as when txTarget was 8 ms

// pace pauses between a paced flush's transactions, for d or until ctx
// ends or the store closes: a caller's Flush runs on a ctx that Close
// does not cancel, and would otherwise sleep out its pause before finding
// the store closed.
func (db *DB) pace(ctx context.Context, d time.Duration) {
	pause := time.NewTimer(d)
	defer pause.Stop()
	select {
	case <-ctx.Done():
	case <-db.closing:
	case <-pause.C:
	}
}

// flush writes every use held only in memory, sorted by id (the ids
// bucket's key: a leaf is rewritten once for all the uses it holds) and in
// transactions sized by flushSize (nextIO, and cut short by workCap) to
// hold the writer lock about sweepHold, so that no
// Issue or Revoke waits long behind one.
//
// When paced (the background writer and DB.Flush; not Close), it pauses
// after each transaction for as long as it took, at most flushPauseMax,
// so that it takes at most about half a core: on a 2-core machine an
// unpaced flush of 100,000 uses held one core for its whole second, and
// the p99 of the Validates beside it was 3.5-3.9 times their p99 without
// (a goroutine that only spins cost them 1.6-2 times). Paced, the pass
// takes about twice as long, well within TouchInterval/2, and writers
// find the lock free between its transactions.
func (db *DB) flush(ctx context.Context, paced bool) error {
	db.flushMu.Lock()
	defer db.flushMu.Unlock()
	pending := db.cache.dirty()
	slices.SortFunc(pending, func(a, b touch) int { return compareBytes(a.id[:], b.id[:]) })
	var byShard []touch // persistedAll's scratch
	var w touchWriter   // one for the flush: its value buffers serve one transaction after another
	for len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := pending[:min(len(pending), db.flushSize.most())]
		written := 0
		t := time.Now()
		var bad damage
		// In the committer's queue (sizedTx: runSolo), as the sweep's
		// transactions are: through update, bbolt's writer lock alone
		// decided who wrote next, and Close's unpaced flush, which begins
		// its next transaction as soon as the last one commits, could take
		// the lock again and again before an Issue waiting for it (see
		// runSolo). The sizer learns from the uses written only: a use
		// whose token went after dirty() listed it, or whose stored use is
		// as late, is a search, and counted as written it made the rest
		// look free (see sweepPass).
		st, err := db.sizedTx(&db.flushSize, func(tx *bolt.Tx, b *txBudget) (done, _ int, _ error) {
			written, bad = 0, bad[:0]
			most := int64(math.MinInt64) // the latest use written: before 1970 too
			w.next()                     // the last transaction has ended: sizedTx returned
			for ; done < len(chunk) && !b.over(done); done++ {
				t := chunk[done]
				ok, err := w.write(tx, t)
				if errors.Is(err, ErrCorrupt) { // a damaged ids entry costs only itself
					bad.add(t.h, uuid.UUID(t.id), err)
					continue
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					return 0, 0, err
				}
				if ok {
					written++
					most = max(most, t.used)
				}
			}
			if written == 0 {
				return done, 0, nil
			}
			return done, written, raiseUsedMax(tx, most)
		})
		took := time.Since(t)
		chunk = chunk[:st.done] // the rest waits for the next transaction
		pending = pending[len(chunk):]
		db.log.Debug("tokenstore: flush transaction", "uses", len(chunk), "written", written, "took", took, "held", st.held)
		db.forget(bad)
		if err != nil {
			return boltErr(err)
		}
		db.cache.persistedAll(chunk, &byShard)
		if fresh := db.damaged.addNew(bad); len(fresh) > 0 {
			db.log.Error("tokenstore: writing last-used times skipped damaged records; run check", "damaged", len(fresh), "err", fresh.err())
		}
		db.ctr.touchWrites.Add(1)
		db.ctr.touchesPersisted.Add(uint64(written))
		if paced && len(pending) > 0 {
			db.pace(ctx, min(took, flushPauseMax)) // ctx ended: the loop's check returns; closed: the rest is written unpaced, as Close's own flush would
		}
	}
	return nil
}
