package tokenstore

import (
	"context"
	"errors"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Revoke deletes token at once and durably. It returns [ErrNotFound] for
// a token the store does not hold (never issued, or already revoked). A
// token whose record is damaged is deleted too, with every index entry
// that leads to it.
//
// A token rotated away and still in its grace (see [DB.Rotate]), which
// Validate accepts, is revoked too: its successor is deleted with it, and
// so is the token's tombstone, so the token is then ErrNotFound
// everywhere, as any revoked token, never [ErrReused] (the client that
// lost the rotation's answer and logs out, or retries its logout, holds
// only the old token and is not taken for a thief). Rotated away and out
// of its grace (or its successor used), it is ErrNotFound, and Revoke
// revokes nothing.
func (db *DB) Revoke(ctx context.Context, token string) error {
	if err := db.begin(ctx, true); err != nil {
		return wrap("revoke", err)
	}
	h, err := db.format.Parse(token)
	if err != nil {
		return err
	}
	// An unknown token (revoked twice, say) is answered by a read, without
	// queueing for a write transaction.
	if _, err := db.read(h); err != nil && !errors.Is(err, ErrCorrupt) {
		if errors.Is(err, errRotatedAway) && db.rotationKey != nil {
			return wrap("revoke", db.revokeInGrace(h))
		}
		return wrap("revoke", err)
	}
	return db.revoke("revoke", func(*bolt.Tx) (Hash, error) { return h, nil })
}

// RevokeID deletes the token with the given ID. It returns [ErrNotFound]
// when there is none. It is how an operator removes a record that
// [DB.Check] names as damaged: RevokeID deletes it, and every index entry
// that leads to it, without reading it (at the cost of a walk of the
// indexes).
func (db *DB) RevokeID(ctx context.Context, id uuid.UUID) error {
	op := "revoke " + id.String()
	if err := db.begin(ctx, true); err != nil {
		return wrap(op, err)
	}
	return db.revoke(op, func(tx *bolt.Tx) (Hash, error) {
		h, _, err := getByID(tx, id[:])
		if errors.Is(err, ErrCorrupt) && h != (Hash{}) {
			return h, nil // a damaged record: revoke deletes it unread
		}
		return h, err
	})
}

// revoke deletes the one token that find names, in a group-committed
// transaction.
func (db *DB) revoke(op string, find func(*bolt.Tx) (Hash, error)) error {
	del := deletes{cache: db.cache}
	err := db.commit.run(func(tx *bolt.Tx) error {
		h, err := find(tx)
		if err != nil {
			return refuse(err)
		}
		rec, err := getRecord(tx, h)
		if errors.Is(err, ErrCorrupt) {
			// Revoking is how an operator removes a record that Check
			// names as damaged: it must not need the record's contents.
			return del.deleteDamaged(tx, h)
		}
		if err != nil {
			return refuse(err)
		}
		return del.delete(tx, h, &rec)
	})
	del.end()
	if err != nil {
		return wrap(op, boltErr(err))
	}
	db.ctr.revoked.Add(1)
	return nil
}

// RevokeSubject deletes every token of subject ("log out everywhere") in
// one transaction and returns how many there were, expired ones included.
//
// A damaged record costs only itself: RevokeSubject deletes every other
// token of subject and returns their number with an error wrapping
// [ErrCorrupt] that names the damaged ones by ID (which Validate refuses
// with ErrCorrupt as well).
func (db *DB) RevokeSubject(ctx context.Context, subject string) (int, error) {
	if err := db.begin(ctx, true); err != nil {
		return 0, wrap("revoke subject", err)
	}
	if err := ValidateSubject(subject); err != nil {
		return 0, err
	}
	var (
		hashes []Hash
		bad    damage
	)
	del := deletes{cache: db.cache}
	err := db.commit.run(func(tx *bolt.Tx) error {
		hashes, bad = hashes[:0], bad[:0]
		prefix := subjectPrefix(subject)
		var recs []record
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
			hashes, recs = append(hashes, h), append(recs, rec)
		}
		for i, h := range hashes { // after the walk: deleting moves the cursor's keys
			if err := del.delete(tx, h, &recs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	del.end()
	if err != nil {
		return 0, wrap("revoke subject", boltErr(err))
	}
	db.ctr.revoked.Add(uint64(len(hashes)))
	return len(hashes), wrap("revoke subject", bad.err())
}
