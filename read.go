package tokenstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// errCallerPanic stops a ForEach whose callback panicked.
var errCallerPanic = errors.New("tokenstore: callback panicked")

// Get returns the token with the given ID. For a token past its deadline
// that the sweeper has not deleted yet it returns the Info and
// [ErrExpired]; for none, [ErrNotFound].
func (db *DB) Get(ctx context.Context, id uuid.UUID) (Info, error) {
	if err := db.begin(ctx, false); err != nil {
		return Info{}, wrap("get", err)
	}
	var rec record
	var h Hash
	err := view(db.bolt, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIDs).Get(id[:])
		if len(v) != len(h) {
			return ErrNotFound
		}
		h = Hash(v)
		var err error
		rec, err = getRecord(tx, h)
		return err
	})
	if err != nil {
		return Info{}, wrap("get "+id.String(), boltErr(err))
	}
	info := rec.info(db.cache.lastUse(h, &rec))
	if !db.now().Before(info.ExpiresAt) {
		return info, wrap("get "+id.String(), ErrExpired)
	}
	db.ctr.lookups.Add(1)
	return info, nil
}

// List returns subject's live tokens, oldest first. An unknown subject has
// none: List returns an empty slice and no error.
func (db *DB) List(ctx context.Context, subject string) ([]Info, error) {
	if err := db.begin(ctx, false); err != nil {
		return nil, wrap("list", err)
	}
	if err := ValidateSubject(subject); err != nil {
		return nil, err
	}
	now := db.nowMs()
	out := []Info{}
	err := view(db.bolt, func(tx *bolt.Tx) error {
		prefix := subjectPrefix(subject)
		tokens := tx.Bucket(bucketTokens)
		c := tx.Bucket(bucketSubjects).Cursor()
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			rec, err := decodeRecord(tokens.Get(v))
			if err != nil {
				return err
			}
			used := db.cache.lastUse(Hash(v), &rec)
			if now < rec.policy.Deadline(rec.created, used) {
				out = append(out, rec.info(used))
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list", boltErr(err))
	}
	return out, nil
}

// ForEach calls fn with every token in the file, live or expired, in ID
// (creation) order, inside one read transaction; fn's error stops it and
// is returned. It is how a tool lists a million tokens without holding them.
func (db *DB) ForEach(ctx context.Context, fn func(Info) error) error {
	if err := db.begin(ctx, false); err != nil {
		return wrap("for each", err)
	}
	// view turns panics into ErrCorrupt; fn's own are the caller's, and
	// go back to it as panics.
	var fnPanic any
	call := func(info Info) (err error) {
		defer func() {
			if r := recover(); r != nil {
				fnPanic, err = r, errCallerPanic
			}
		}()
		return fn(info)
	}
	err := boltErr(view(db.bolt, func(tx *bolt.Tx) error {
		tokens := tx.Bucket(bucketTokens)
		c := tx.Bucket(bucketIDs).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, err := decodeRecord(tokens.Get(v))
			if err != nil {
				return fmt.Errorf("id %x: %w", k, err)
			}
			if err := call(rec.info(db.cache.lastUse(Hash(v), &rec))); err != nil {
				return err
			}
		}
		return nil
	}))
	if fnPanic != nil {
		panic(fnPanic)
	}
	return err
}
