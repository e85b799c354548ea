package tokenstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// A tombstone is what Rotate leaves of the token it retires (issue 17):
// enough to answer that token within its grace, to recognise its reuse
// after, and to revoke its family then. It lives until the retired
// token's own deadline as of the rotation (it could not have been used
// after that anyway), filed in tombdue by that deadline so that a sweep
// reads only the tombstones due. Tombstones are not tokens: Stats.Tokens,
// the per-subject limit, List and ForEach do not count them, and a sweep's
// count does not include them.
var (
	bucketTombstones = []byte("tombstones")
	bucketTombDue    = []byte("tombdue")
)

// Tombstone layout, version 1 (integers big-endian, times Unix ms):
//
//	0      version (1)
//	1:17   id of the retired token
//	17:33  its family
//	33:65  hash of its successor
//	65:73  its creation
//	73:81  its last use as of the rotation
//	81:89  grace end (0: closed by a family revocation)
//	89:97  deadline: when the tombstone goes
//	97:101 CRC32 (IEEE) of the key (the retired token's hash) and all that
const (
	tombstoneVersion = 1
	tombstoneLen     = 101
)

type tombstone struct {
	id, family      uuid.UUID
	successor       Hash
	created, used   int64
	graceEnd, death int64 // death: the deadline, when the sweep deletes it
}

func (t *tombstone) encode(h Hash) []byte {
	v := make([]byte, 0, tombstoneLen)
	v = append(v, tombstoneVersion)
	v = append(v, t.id[:]...)
	v = append(v, t.family[:]...)
	v = append(v, t.successor[:]...)
	for _, x := range []int64{t.created, t.used, t.graceEnd, t.death} {
		v = binary.BigEndian.AppendUint64(v, uint64(x))
	}
	return binary.BigEndian.AppendUint32(v, crc32.Update(crc32.ChecksumIEEE(h[:]), crc32.IEEETable, v))
}

func decodeTombstone(h Hash, v []byte) (tombstone, error) {
	var t tombstone
	switch {
	case len(v) != tombstoneLen:
		return t, fmt.Errorf("%w: tombstone %s: %d bytes, want %d", ErrCorrupt, hashName(h[:]), len(v), tombstoneLen)
	case crc32.Update(crc32.ChecksumIEEE(h[:]), crc32.IEEETable, v[:tombstoneLen-4]) != binary.BigEndian.Uint32(v[tombstoneLen-4:]):
		return t, fmt.Errorf("%w: tombstone %s: checksum mismatch", ErrCorrupt, hashName(h[:]))
	case v[0] != tombstoneVersion:
		return t, fmt.Errorf("%w: tombstone %s: version %d, this build reads %d", ErrCorrupt, hashName(h[:]), v[0], tombstoneVersion)
	}
	copy(t.id[:], v[1:17])
	copy(t.family[:], v[17:33])
	copy(t.successor[:], v[33:65])
	t.created = int64(binary.BigEndian.Uint64(v[65:]))
	t.used = int64(binary.BigEndian.Uint64(v[73:]))
	t.graceEnd = int64(binary.BigEndian.Uint64(v[81:]))
	t.death = int64(binary.BigEndian.Uint64(v[89:]))
	return t, nil
}

// tombDueKey orders tombstones by deadline, as expiryKey does tokens.
func tombDueKey(deadline int64, h Hash) []byte {
	k := make([]byte, 8, 8+len(h))
	binary.BigEndian.PutUint64(k, uint64(deadline)^(1<<63)) // as expiryKey: expiryKeyDeadline reads it
	return append(k, h[:]...)
}

// tombDueEntry names a tombdue entry (tombDueKey's 40 bytes) in a Check
// report: its deadline and its tombstone's hashName, never the whole hash
// (see errFamilyEntry).
func tombDueEntry(k []byte) string {
	deadline := expiryKeyDeadline(k)
	return fmt.Sprintf("entry (deadline %s, tombstone %s)", time.UnixMilli(deadline).UTC().Format(time.RFC3339Nano), hashName(k[8:]))
}

// getTombstone reads h's tombstone in tx: ErrNotFound when there is none
// (or the bucket is missing, in a read-only store of an older file).
func getTombstone(tx *bolt.Tx, h Hash) (tombstone, error) {
	b := tx.Bucket(bucketTombstones)
	if b == nil {
		return tombstone{}, ErrNotFound
	}
	v := b.Get(h[:])
	if v == nil {
		return tombstone{}, ErrNotFound
	}
	return decodeTombstone(h, v)
}

// putTombstone writes a new tombstone of h with its tombdue and families
// entries.
func putTombstone(tx *bolt.Tx, h Hash, t *tombstone) error {
	return errors.Join(
		putTombstoneValue(tx, h, t),
		tx.Bucket(bucketTombDue).Put(tombDueKey(t.death, h), []byte{}),
		tx.Bucket(bucketFamilies).Put(familyTombKey(t.family, h), []byte{}),
	)
}

// putTombstoneValue rewrites h's tombstone alone: its deadline and family,
// which its entries name, must not have changed.
func putTombstoneValue(tx *bolt.Tx, h Hash, t *tombstone) error {
	return tx.Bucket(bucketTombstones).Put(h[:], t.encode(h))
}

// deleteTombstone deletes h's tombstone t with its tombdue and families
// entries.
func deleteTombstone(tx *bolt.Tx, h Hash, t *tombstone) error {
	return errors.Join(
		tx.Bucket(bucketTombstones).Delete(h[:]),
		tx.Bucket(bucketTombDue).Delete(tombDueKey(t.death, h)),
		deleteFamilyKey(tx, familyTombKey(t.family, h)),
	)
}

// tombSweepTx is the most tombstones one sweep transaction deletes.
const tombSweepTx = 1000

// sweepTombstones deletes the tombstones whose deadline is at or before
// now, with their entries, in transactions of at most tombSweepTx: it
// reads the tombdue index from its start to now, so it costs in
// proportion to the tombstones due. With none due it writes nothing. A
// damaged tombstone costs only itself: it is left with its entries and
// reported once (db.damaged: returned the first time, for the sweep to
// report with its own, appended to *found as they are met, so that the
// sweep's recover sees them too), and stepped over after.
func (db *DB) sweepTombstones(ctx context.Context, now int64, found *damage) error {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		type due struct {
			key    []byte
			h      Hash
			family []byte // nil: a leftover due entry, deleted alone
		}
		var items []due
		var bad damage
		err := view(db.bolt, func(tx *bolt.Tx) error {
			b, tombs := tx.Bucket(bucketTombDue), tx.Bucket(bucketTombstones)
			if b == nil || tombs == nil {
				return nil
			}
			c := b.Cursor()
			for k, _ := c.First(); k != nil && len(items) < tombSweepTx; k, _ = c.Next() {
				if len(k) == 8+len(Hash{}) && expiryKeyDeadline(k) > now {
					break
				}
				it := due{key: slices.Clone(k)}
				if len(k) != 8+len(Hash{}) {
					items = append(items, it)
					continue
				}
				it.h = Hash(k[8:])
				if db.damaged.has(it.h[:]) {
					continue
				}
				if v := tombs.Get(it.h[:]); v != nil {
					t, err := decodeTombstone(it.h, v)
					if err != nil {
						bad.add(it.h, uuid.UUID{}, err)
						continue
					}
					if t.death != expiryKeyDeadline(k) {
						items = append(items, due{key: it.key}) // not its entry: a leftover
						continue
					}
					it.family = familyTombKey(t.family, it.h)
				}
				items = append(items, it)
			}
			return nil
		})
		*found = append(*found, db.damaged.addNew(bad)...)
		if err != nil || len(items) == 0 {
			return err
		}
		n := 0
		err = db.commit.runSolo(func(tx *bolt.Tx) error { // in turn with Issues, as the token passes
			n = 0
			b, tombs := tx.Bucket(bucketTombDue), tx.Bucket(bucketTombstones)
			for _, it := range items {
				if err := b.Delete(it.key); err != nil {
					return err
				}
				if it.family == nil {
					continue
				}
				n++
				if err := errors.Join(tombs.Delete(it.h[:]), deleteFamilyKey(tx, it.family)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		total += n
		db.log.Debug("tokenstore: swept tombstones", "deleted", n, "total", total, "at", time.UnixMilli(now))
		if len(items) < tombSweepTx {
			return nil
		}
	}
}

// checkFamilies is Check's part for families: every tombstone decodes and
// has its tombdue and families entries, every tombdue and families entry
// leads to what it names, and every token Rotate wrote into another
// token's family has its families entry (tokens, read by check). Each
// problem costs only itself.
func checkFamilies(tx *bolt.Tx, sweeping bool, add func(string, ...any)) {
	tombs, dueB, fam := tx.Bucket(bucketTombstones), tx.Bucket(bucketTombDue), tx.Bucket(bucketFamilies)
	if tombs == nil || dueB == nil || fam == nil {
		if tombs != nil || dueB != nil || fam != nil {
			add("families: some of the buckets %s, %s, %s are missing", bucketTombstones, bucketTombDue, bucketFamilies)
		}
		return
	}
	c := tombs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != len(Hash{}) {
			add("tombstones: key of %d bytes", len(k))
			continue
		}
		t, err := decodeTombstone(Hash(k), v)
		if err != nil {
			add("%v", err)
			continue
		}
		if dueB.Get(tombDueKey(t.death, Hash(k))) == nil {
			add("tombstone of token %s: missing from the %s index", t.id, bucketTombDue)
		}
		if fam.Get(familyTombKey(t.family, Hash(k))) == nil {
			add("tombstone of token %s: missing from the %s index", t.id, bucketFamilies)
		}
	}
	c = dueB.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 8+len(Hash{}) {
			add("%s: key of %d bytes", bucketTombDue, len(k))
			continue
		}
		h := Hash(k[8:])
		v := tombs.Get(h[:])
		if v == nil {
			add("%s: %s points at no tombstone", bucketTombDue, tombDueEntry(k))
			continue
		}
		if t, err := decodeTombstone(h, v); err == nil && t.death != expiryKeyDeadline(k) {
			add("%s: %s disagrees with tombstone of token %s", bucketTombDue, tombDueEntry(k), t.id)
		}
	}
	c = fam.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(v) != 0 {
			add("%s", errFamilyEntry(k, "has a value"))
		}
		switch len(k) {
		case 32:
			_, rec, err := getByID(tx, k[16:])
			switch {
			case errors.Is(err, ErrNotFound):
				if !sweeping {
					add("%s", errFamilyEntry(k, "points at no token"))
				}
			case err != nil:
				// the token's own problem, which check reports
			case rec.familyID() != uuid.UUID(k[:16]) || !rec.successor():
				add("%s", errFamilyEntry(k, fmt.Sprintf("token %s is of family %s", rec.id, rec.familyID())))
			}
		case 48:
			v := tombs.Get(k[16:])
			if v == nil {
				add("%s", errFamilyEntry(k, "points at no tombstone"))
				continue
			}
			if t, err := decodeTombstone(Hash(k[16:]), v); err == nil && t.family != uuid.UUID(k[:16]) {
				add("%s", errFamilyEntry(k, fmt.Sprintf("the tombstone of token %s is of family %s", t.id, t.family)))
			}
		default:
			add("%s", errFamilyEntry(k, fmt.Sprintf("key of %d bytes", len(k))))
		}
	}
}
