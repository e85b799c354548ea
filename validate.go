package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// Validate checks token and counts it as a use: a sliding token's deadline
// moves to now + idle (within its cap). It returns [ErrMalformed],
// [ErrNotFound] (unknown or revoked), [ErrExpired], or [ErrReused] for a
// token rotated away and presented after its grace, whose whole family
// it then revokes (see [DB.Rotate]); the returned Info carries the new
// ExpiresAt. A rotated-away token within its grace answers with its own
// Info.
//
// Validate never waits for a disk write under default Options: the use is
// kept in memory and written by the background writer within
// TouchInterval (see "Sliding expiry without a write per request" in the
// package documentation, and Options.FsyncReturningUses).
func (db *DB) Validate(ctx context.Context, token string) (Info, error) {
	return db.check(ctx, token, true)
}

// Lookup answers as [DB.Validate] does without counting a use.
func (db *DB) Lookup(ctx context.Context, token string) (Info, error) {
	return db.check(ctx, token, false)
}

func (db *DB) check(ctx context.Context, token string, use bool) (Info, error) {
	op := "lookup"
	if use {
		op = "validate"
	}
	if err := db.begin(ctx, false); err != nil {
		return Info{}, wrap(op, err)
	}
	h, err := db.format.Parse(token)
	if err != nil {
		db.ctr.malformed.Add(1)
		return Info{}, err
	}
	now := db.nowMs()
	r, err := db.cache.lookup(h, now, use, func() (record, error) {
		if use && !db.fsyncReturning {
			return db.readForUse(h, now)
		}
		return db.read(h)
	})
	stripe := db.cache.shardIndex(h)
	if r.hit {
		db.ctr.hits.add(stripe)
	} else {
		db.ctr.misses.add(stripe)
	}
	if errors.Is(err, errRotatedAway) && db.rotationKey != nil {
		// A rotated-away token: in its grace, or reused (rotate.go).
		if r.info, err = db.rotatedAway(h, now); err == nil {
			r.lag = 0
		}
	}
	switch {
	case err != nil:
		if errors.Is(err, ErrNotFound) {
			db.ctr.notFound.Add(1)
		}
		if errors.Is(err, ErrExpired) {
			db.ctr.expired.Add(1)
		}
		return Info{}, wrap(op, err)
	case r.expired:
		db.ctr.expired.Add(1)
		return Info{}, wrap(op, ErrExpired)
	}
	if use && r.lag > 0 && !db.ro && db.closed.Load() {
		// Close began after this call's begin, and its last flush may
		// have listed the uses before this one was recorded: the token
		// would be answered valid by a use never written. Read after
		// the use is recorded (under its shard's lock), closed is false
		// only if Close's flush lists the uses after it: then it writes
		// this one.
		return Info{}, wrap(op, ErrClosed)
	}
	info := r.info
	if use {
		raiseTo(&db.usedMax, max(now, info.LastUsedAt.UnixMilli())) // a successor's first use may be 1 ms ahead (cache.go)
	}
	// A use is written by the background writer (touch.go), never here,
	// unless the Options ask for it.
	if use && !db.ro && r.lag > 0 && (db.touch < 0 ||
		db.fsyncReturning && info.Policy.IsSliding() && r.lag >= db.touch.Milliseconds()) {
		// The token is valid whatever this write does: if it fails (a
		// full disk, say) the use stays in memory for the background
		// writer, and a crash before that can only make the token
		// expire earlier. Failing the request would turn a full disk
		// into an outage of every idle-returning user.
		if err := db.persistTouch(h); err != nil && !errors.Is(err, ErrClosed) {
			db.log.Warn("tokenstore: writing a last use failed; kept in memory", "id", info.ID, "err", err)
		}
	}
	if info.Metadata != nil {
		info.Metadata = maps.Clone(info.Metadata)
	}
	if use {
		db.ctr.validated.add(stripe)
	} else {
		db.ctr.lookups.add(stripe)
	}
	return info, nil
}

// readForUse reads h's record for a Validate at now. A token alive by its
// creation alone (now before the deadline of a use at creation: an
// absolute token not expired, a sliding one younger than its idle
// timeout) is valid whatever its stored last use, and the use being made
// is later than that: its ids entry is not read, and the record's last
// use is set to its creation, a lower bound (the cache then counts the
// use as unwritten, and the background writer keeps the later of the
// two). One B+tree read instead of two: on 1M tokens that is what puts a
// returning user's first Validate near a bare bbolt read. Any other token
// has its ids entry read as well (its record is not read again), and so
// has every token while the clock reads earlier than a use the file may
// hold (usedMax): last uses never move back.
func (db *DB) readForUse(h Hash, now int64) (rec record, err error) {
	err = db.commit.reads.view(h, func(t *readTx) error {
		v := t.bucket(readTokens).Get(h[:])
		if v == nil {
			return notFound(t.tx, h)
		}
		if rec, err = decodeRecord(v); err != nil {
			return err
		}
		// The stored last use is at most usedMax, or created when none
		// was written: a clock set back below either must see it.
		if now < rec.deadlineAt(rec.created) && now >= rec.created && now >= db.usedMax.Load() {
			rec.lastUsed = rec.created
			return nil
		}
		return readIDEntry(t.bucket(readIDs), h, &rec)
	})
	return rec, boltErr(err)
}

// read reads h's record in a read-only transaction (a kept one: see
// readTxs).
func (db *DB) read(h Hash) (rec record, err error) {
	err = db.commit.reads.view(h, func(t *readTx) error {
		rec, err = getRecordIn(t.bucket(readTokens), t.bucket(readIDs), h)
		if err == ErrNotFound { // getRecordIn's own: no record (a damaged one is wrapped)
			return notFound(t.tx, h)
		}
		return err
	})
	return rec, boltErr(err)
}

// errRotatedAway is the ErrNotFound of a token whose record tx does not
// hold but whose tombstone it does: rotated away, it is answered by its
// tombstone (rotate.go). Its text is ErrNotFound's.
var errRotatedAway = fmt.Errorf("%w", ErrNotFound)

// notFound is the error of h, of which tx holds no record: errRotatedAway
// when tx holds h's tombstone, else ErrNotFound. Asked in the read
// transaction that missed, so that a token never issued costs Validate,
// Lookup and Revoke one read transaction, not a second for its tombstone.
func notFound(tx *bolt.Tx, h Hash) error {
	if b := tx.Bucket(bucketTombstones); b != nil && b.Get(h[:]) != nil {
		return errRotatedAway
	}
	return ErrNotFound
}

// raiseTo makes *a at least v.
func raiseTo(a *atomic.Int64, v int64) {
	for m := a.Load(); v > m; m = a.Load() {
		if a.CompareAndSwap(m, v) {
			return
		}
	}
}
