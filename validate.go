package tokenstore

import (
	"context"
	"errors"
	"maps"

	bolt "go.etcd.io/bbolt"
)

// Validate checks token and counts it as a use: a sliding token's deadline
// moves to now + idle (within its cap). It returns [ErrMalformed],
// [ErrNotFound] (unknown or revoked) or [ErrExpired]; the returned Info
// carries the new ExpiresAt.
//
// Validate usually writes nothing: see "Sliding expiry without a write per
// request" in the package documentation.
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
	s := db.cache.shard(h)
	for {
		s.mu.Lock()
		e := s.m[h]
		// While a delete of h is in flight, the file decides: once that
		// delete commits, someone may have seen it (a Revoke's ErrNotFound)
		// before the entry here is dropped.
		deleting := s.deleting[h] > 0
		if e == nil || deleting {
			gen := s.gen
			s.mu.Unlock()
			db.ctr.misses.Add(1)
			rec, err := db.read(h)
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					db.ctr.notFound.Add(1)
				}
				return Info{}, wrap(op, err)
			}
			s.mu.Lock()
			if s.gen != gen { // a write deleted something in this shard meanwhile: read again
				s.mu.Unlock()
				continue
			}
			deleting = s.deleting[h] > 0
			if e = s.m[h]; e == nil {
				e = &entry{rec: rec, used: rec.lastUsed}
				if !deleting { // a record about to go is not cached
					s.insertLocked(h, e)
				}
			}
		} else {
			db.ctr.hits.Add(1)
		}
		if now >= e.rec.policy.Deadline(e.rec.created, e.used) {
			s.mu.Unlock()
			db.ctr.expired.Add(1)
			return Info{}, wrap(op, ErrExpired)
		}
		if use && now > e.used { // never backwards, whatever the clock does
			e.used = now
		}
		info := e.rec.info(e.used)
		sync := use && !db.ro && !deleting && e.dirty() && (db.touch < 0 ||
			e.rec.policy.IsSliding() && e.used-e.rec.lastUsed >= db.touch.Milliseconds())
		if s.m[h] == e {
			s.releaseLocked(h, e)
		}
		s.mu.Unlock()

		if sync {
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
			db.ctr.validated.Add(1)
		} else {
			db.ctr.lookups.Add(1)
		}
		return info, nil
	}
}

// read reads h's record in a read-only transaction.
func (db *DB) read(h Hash) (rec record, err error) {
	err = view(db.bolt, func(tx *bolt.Tx) error {
		rec, err = getRecord(tx, h)
		return err
	})
	return rec, boltErr(err)
}
