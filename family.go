package tokenstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Token families (issue 17). A family is a chain of rotations A → B → C…;
// its ID is the ID of its first token, and its cap counts from that
// token's creation (its birth). A record that Issue wrote is a family of
// its own (ID = the token's, birth = its creation) and stores nothing for
// it; a record that Rotate wrote is version 3 and carries both (24 bytes,
// bucket.go). The families bucket lets RevokeFamily find what a family
// holds without a walk of the file: an entry for each token Rotate wrote
// into another token's family, and one for each tombstone (tombstone.go).
// The family's first token needs none: its ID is the family's.
var (
	bucketFamilies = []byte("families")

	familyBuckets = [][]byte{bucketTombstones, bucketTombDue, bucketFamilies}

	// metaRotationKey is the HMAC-SHA256 key successors are derived with
	// (rotate.go): 32 random bytes, generated once by a writable Open.
	metaRotationKey = []byte("rotationkey")
)

// familySize is what a version-3 record adds: family id and birth.
const familySize = 16 + 8

// familyID is the record's family: its own ID unless Rotate wrote it.
func (r *record) familyID() uuid.UUID {
	if r.family == (uuid.UUID{}) {
		return r.id
	}
	return r.family
}

// birth is the creation of the family's first token, which the cap
// (Policy.MaxLifetime) counts from.
func (r *record) birth() int64 {
	if r.family == (uuid.UUID{}) {
		return r.created
	}
	return r.born
}

// successor reports whether Rotate wrote the record (version 3).
func (r *record) successor() bool { return r.family != (uuid.UUID{}) }

// deadlineAt is the record's deadline had it last been used at used: its
// policy's, with the cap counted from the family's birth. Every path that
// decides whether a token lives (Validate, Lookup, Get, List, ForEach,
// the sweep, Check, the per-subject limit, Rotate) goes through it.
func (r *record) deadlineAt(used int64) int64 { return r.policy.Deadline(r.birth(), used) }

func appendFamily(dst []byte, r *record) []byte {
	dst = append(dst, r.family[:]...)
	return binary.BigEndian.AppendUint64(dst, uint64(r.born))
}

// decodeFamily reads a version-3 record's family fields from the end of
// body (its checksum already cut off) and returns body without them.
func decodeFamily(r *record, body []byte) ([]byte, error) {
	if len(body) < recordFixed+familySize {
		return nil, corrupt("version-3 record of %d bytes is too short", len(body))
	}
	at := len(body) - familySize
	copy(r.family[:], body[at:])
	r.born = int64(binary.BigEndian.Uint64(body[at+16:]))
	if r.family == (uuid.UUID{}) {
		return nil, corrupt("version-3 record without a family")
	}
	return body[:at], nil
}

// familyTokenKey is the families entry of a token Rotate wrote into
// another token's family, or nil for any other token.
func (r *record) familyTokenKey() []byte {
	if !r.successor() || r.family == r.id {
		return nil
	}
	return append(r.family[:len(r.family):len(r.family)], r.id[:]...)
}

func familyTombKey(family uuid.UUID, h Hash) []byte {
	return append(family[:len(family):len(family)], h[:]...)
}

// putFamilyEntry and deleteFamilyEntry keep a record's families entry with
// the record (putRecord, deleteRecord, the sweep's first pass).
func putFamilyEntry(tx *bolt.Tx, r *record) error {
	if k := r.familyTokenKey(); k != nil {
		return tx.Bucket(bucketFamilies).Put(k, []byte{})
	}
	return nil
}

func deleteFamilyKey(tx *bolt.Tx, k []byte) error {
	if k == nil {
		return nil
	}
	if b := tx.Bucket(bucketFamilies); b != nil {
		return b.Delete(k)
	}
	return nil
}

// openFamilies makes sure a writable store's file holds the buckets of
// families and the rotation key (a file of an earlier version has
// neither; the schema-1 upgrade runs before it), and loads the key. A
// read-only store treats missing buckets as empty.
func (db *DB) openFamilies() error {
	missing := false
	err := view(db.bolt, func(tx *bolt.Tx) error {
		for _, name := range familyBuckets {
			missing = missing || tx.Bucket(name) == nil
		}
		k := tx.Bucket(bucketMeta).Get(metaRotationKey)
		missing = missing || len(k) != rotationKeyLen
		if len(k) == rotationKeyLen {
			db.rotationKey = slices.Clone(k)
		}
		return nil
	})
	if err != nil || !missing || db.ro {
		return err
	}
	return db.commit.update(func(tx *bolt.Tx) error {
		for _, name := range familyBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		if k := m.Get(metaRotationKey); len(k) == rotationKeyLen {
			db.rotationKey = slices.Clone(k)
			return nil
		}
		db.rotationKey = newRotationKey()
		return m.Put(metaRotationKey, db.rotationKey)
	})
}

// RevokeFamily deletes every live token of the family familyID (the ID of
// its first token: Info.FamilyID) in one durable transaction, and ends
// the grace of every rotated-away token of it still in one (see
// [DB.Rotate]). It returns how many tokens it deleted (a grace it ends is
// not counted: no token is deleted for it); an unknown family is 0 and
// no error. The family's tombstones stay: a rotated-away token of it
// presented later is [ErrReused] until its own deadline would have
// passed, also with the clock set back into a grace that had ended by
// time before the revocation.
func (db *DB) RevokeFamily(ctx context.Context, familyID uuid.UUID) (int, error) {
	op := "revoke family " + familyID.String()
	if err := db.begin(ctx, true); err != nil {
		return 0, wrap(op, err)
	}
	n := 0
	del := deletes{cache: db.cache}
	err := db.commit.run(func(tx *bolt.Tx) (err error) {
		n, err = db.revokeFamily(tx, &del, familyID)
		return err
	})
	del.end()
	if err != nil {
		return 0, wrap(op, boltErr(err))
	}
	db.ctr.revoked.Add(uint64(n))
	return n, nil
}

// revokeFamily deletes the live tokens of family in tx, closes the grace
// of each of its tombstones (graceEnd 0, ended whatever the clock reads
// after), and returns how many tokens it deleted. A
// families entry that leads nowhere (its token revoked or swept in a way
// that left it) is deleted on the way; a damaged record costs only itself
// (left for Check to name).
func (db *DB) revokeFamily(tx *bolt.Tx, del *deletes, family uuid.UUID) (int, error) {
	type victim struct {
		h   Hash
		rec record
	}
	var victims []victim
	if h, rec, err := getByID(tx, family[:]); err == nil && rec.familyID() == family {
		victims = append(victims, victim{h, rec})
	} else if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
		return 0, err
	}
	var keys [][]byte
	if fam := tx.Bucket(bucketFamilies); fam != nil {
		c := fam.Cursor()
		for k, _ := c.Seek(family[:]); k != nil && hasPrefix(k, family[:]); k, _ = c.Next() {
			keys = append(keys, slices.Clone(k))
		}
	}
	var stale [][]byte
	for _, k := range keys {
		switch len(k) {
		case 32:
			h, rec, err := getByID(tx, k[16:])
			switch {
			case errors.Is(err, ErrNotFound):
				stale = append(stale, k)
			case errors.Is(err, ErrCorrupt):
				// a damaged record: Check names it, RevokeID removes it
			case err != nil:
				return 0, err
			case rec.familyID() != family:
				stale = append(stale, k)
			default:
				victims = append(victims, victim{h, rec})
			}
		case 48:
			h := Hash(k[16:])
			t, err := getTombstone(tx, h)
			switch {
			case errors.Is(err, ErrNotFound):
				stale = append(stale, k)
			case errors.Is(err, ErrCorrupt):
			case err != nil:
				return 0, err
			case t.graceEnd != 0:
				// Closed for good, also a grace the clock says has
				// ended: set back, the clock must not reopen what a
				// revocation (or the reuse that asked for it) ended.
				// Not counted: no token is deleted for it.
				t.graceEnd = 0
				if err := putTombstoneValue(tx, h, &t); err != nil {
					return 0, err
				}
			}
		}
	}
	for _, k := range stale {
		if err := deleteFamilyKey(tx, k); err != nil {
			return 0, err
		}
	}
	for i := range victims {
		if err := del.delete(tx, victims[i].h, &victims[i].rec); err != nil {
			return 0, err
		}
	}
	return len(victims), nil
}

// errFamilyEntry reports a families entry Check could not account for.
// A tombstone's entry holds the retired token's whole hash: the report
// names it by hashName, as a damaged record is named (damage.go), so that
// a Check report pasted into a ticket carries no hash.
func errFamilyEntry(k []byte, why string) string {
	switch len(k) {
	case 32:
		return fmt.Sprintf("families: entry (family %s, token %s): %s", uuid.UUID(k[:16]), uuid.UUID(k[16:]), why)
	case 48:
		return fmt.Sprintf("families: entry (family %s, tombstone %s): %s", uuid.UUID(k[:16]), hashName(k[16:]), why)
	}
	return fmt.Sprintf("families: entry %x…: %s", k[:min(len(k), 6)], why)
}
