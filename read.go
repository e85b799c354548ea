package tokenstore

import (
	"context"
	"errors"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Get returns the token with the given ID. For a token past its deadline
// that the sweeper has not deleted yet it returns the Info and
// [ErrExpired]; for none, [ErrNotFound].
func (db *DB) Get(ctx context.Context, id uuid.UUID) (Info, error) {
	if err := db.begin(ctx, false); err != nil {
		return Info{}, wrap("get", err)
	}
	var rec record
	var h Hash
	err := view(db.bolt, func(tx *bolt.Tx) (err error) {
		h, rec, err = getByID(tx, id[:])
		return err
	})
	if err != nil {
		return Info{}, wrap("get "+id.String(), boltErr(err))
	}
	used, swept := db.cache.lastUse(h, &rec)
	info := rec.info(used)
	if swept || !db.now().Before(info.ExpiresAt) { // swept: see cache.lastUse
		return info, wrap("get "+id.String(), ErrExpired)
	}
	db.ctr.lookups.add(db.cache.shardIndex(h))
	return info, nil
}

// List returns subject's live tokens, oldest first. An unknown subject has
// none: List returns an empty slice and no error.
//
// A damaged record costs only itself: List returns every other live token
// with an error wrapping [ErrCorrupt] that names the damaged ones by ID.
func (db *DB) List(ctx context.Context, subject string) ([]Info, error) {
	if err := db.begin(ctx, false); err != nil {
		return nil, wrap("list", err)
	}
	if err := ValidateSubject(subject); err != nil {
		return nil, err
	}
	now := db.nowMs()
	out := []Info{}
	var bad damage
	err := view(db.bolt, func(tx *bolt.Tx) error {
		out, bad = out[:0], bad[:0]
		prefix := subjectPrefix(subject)
		c := tx.Bucket(bucketSubjects).Cursor()
		for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
			h, rec, err := getByID(tx, k[len(prefix):])
			if errors.Is(err, ErrNotFound) {
				continue // being swept
			}
			if err != nil {
				bad.add(h, idAfter(k, len(prefix)), err)
				continue
			}
			used, swept := db.cache.lastUse(h, &rec)
			if !swept && now < rec.deadlineAt(used) {
				out = append(out, rec.info(used))
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list", boltErr(err))
	}
	return out, wrap("list", bad.err())
}

// forEachBatch is how many index entries ForEach reads in one read
// transaction. A write that must grow the file waits for every open read
// transaction (bbolt re-maps the file), so ForEach never holds one while
// its callback runs.
const forEachBatch = 256

// ForEach calls fn with every token in the file, live or expired, in ID
// (creation) order; fn's error stops it and is returned. It is how a tool
// lists a million tokens without holding them.
//
// fn may call any method of db, Revoke and Close included. ForEach reads
// the file in batches of 256 records, each in a read transaction of its
// own that ends before fn is called: no other call waits on fn, however
// long it takes, and a write waits on ForEach at most as long as reading
// 256 records takes. So ForEach is not a snapshot: every token that
// exists from its start to its end is seen exactly once, a token issued
// or revoked meanwhile may or may not be. Once db is closed, ForEach
// returns [ErrClosed] before its next batch.
//
// A damaged record costs only itself: ForEach goes on with the others and
// then returns an error wrapping [ErrCorrupt] that names the damaged ones
// by ID (unless fn stopped it first).
func (db *DB) ForEach(ctx context.Context, fn func(Info) error) error {
	if err := db.begin(ctx, false); err != nil {
		return wrap("for each", err)
	}
	var (
		after []byte // the last ID read
		batch []Info
		bad   damage
	)
	for more := true; more; {
		if err := db.begin(ctx, false); err != nil {
			return wrap("for each", err)
		}
		var got damage
		err := view(db.bolt, func(tx *bolt.Tx) error {
			batch, got = batch[:0], got[:0]
			c := tx.Bucket(bucketIDs).Cursor()
			k, _ := c.First()
			if after != nil {
				if k, _ = c.Seek(after); string(k) == string(after) {
					k, _ = c.Next()
				}
			}
			for n := 0; k != nil && n < forEachBatch; k, _ = c.Next() {
				n++
				after = append(after[:0], k...)
				h, rec, err := getByID(tx, k)
				if errors.Is(err, ErrNotFound) {
					continue // being swept
				}
				if err != nil {
					got.add(h, idAfter(k, 0), err)
					continue
				}
				used, _ := db.cache.lastUse(h, &rec)
				batch = append(batch, rec.info(used))
			}
			more = k != nil
			return nil
		})
		if err != nil {
			return wrap("for each", boltErr(err))
		}
		bad = append(bad, got...)
		for _, info := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return wrap("for each", bad.err())
}

// idAfter is the ID that ends an index key at offset from (ids: 0;
// subjects: after the subject and its 0), or the zero UUID.
func idAfter(k []byte, from int) uuid.UUID {
	if len(k) != from+16 {
		return uuid.UUID{}
	}
	return uuid.UUID(k[from:])
}
