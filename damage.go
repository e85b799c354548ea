package tokenstore

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// A damaged record (a flipped bit fails its checksum) costs only itself. A
// pass over many records (Sweep, List, ForEach, RevokeSubject, Check)
// skips it, does its work on every other record, and reports it: its ID
// when an index that led to it knows it, and its hash's last bytes
// (hashName). Nothing damaged is ever treated as valid: Validate, Lookup,
// Get and Rotate of it return ErrCorrupt. Compact and Backup copy it as it
// is, so that Check still names it in the copy; Revoke and RevokeID delete
// it (deleteDamaged), which is how an operator removes what Check names.

// damagedRecord is a record that a pass could not read, or (idsEntry) a
// token's ids entry that the sweep could not read.
type damagedRecord struct {
	h        Hash      // for an ids entry, damagedIDsKey's
	id       uuid.UUID // from the index that led to the record; zero if none did
	err      error     // decodeRecord's or decodeIDValue's, wrapping ErrCorrupt
	idsEntry bool
}

// damagedIDsKey is the key under which damagedSet remembers a damaged ids
// entry of id, whose record cannot be found through it: the id, then a
// tail no SHA-256 (the last 16 bytes of every Hash) is expected to give.
func damagedIDsKey(id []byte) Hash {
	var h Hash
	copy(h[:], id)
	copy(h[16:], "\x00damaged ids\x00\x00\x00\x00")
	return h
}

func (d *damagedRecord) Error() string {
	if d.idsEntry {
		why := strings.TrimPrefix(d.err.Error(), ErrCorrupt.Error()+": ")
		return fmt.Sprintf("token %s: damaged ids entry (%s)", d.id, why)
	}
	why := strings.TrimPrefix(strings.TrimPrefix(d.err.Error(), ErrCorrupt.Error()+": "), "record: ")
	if d.id != (uuid.UUID{}) {
		return fmt.Sprintf("token %s: damaged record %s (%s)", d.id, hashName(d.h[:]), why)
	}
	return fmt.Sprintf("damaged record %s (%s)", hashName(d.h[:]), why)
}

// hashName names a record or tombstone in a report by the last 6 bytes of
// its hash, "…" and 12 hex digits: enough to tell one from another,
// never the whole hash (a report is printed by the CLI and pasted into
// tickets). Not the first bytes: a new token's hash starts with its issue
// time (Hash), the same for every token of a millisecond; the last are
// SHA-256 bytes in both token versions.
func hashName(h []byte) string { return fmt.Sprintf("…%x", h[max(len(h)-6, 0):]) }

func (d *damagedRecord) Unwrap() error { return d.err }

// damage is what one pass found damaged, in the order it met it.
type damage []*damagedRecord

// add notes h's record as damaged, reached through id (zero: unknown).
func (d *damage) add(h Hash, id uuid.UUID, err error) {
	*d = append(*d, &damagedRecord{h: h, id: id, err: err})
}

// maxNamed bounds the damaged records one error names: the rest are
// counted (Check names them all).
const maxNamed = 100

// err is one error naming the damaged records, each wrapping ErrCorrupt,
// or nil when there is none.
func (d damage) err() error {
	switch len(d) {
	case 0:
		return nil
	case 1:
		return d[0]
	}
	errs := make([]error, 0, min(len(d), maxNamed))
	for _, r := range d[:min(len(d), maxNamed)] {
		errs = append(errs, r)
	}
	more := ""
	if len(d) > maxNamed {
		more = fmt.Sprintf(", %d more not named here", len(d)-maxNamed)
	}
	return fmt.Errorf("%d damaged records (run check%s): %w", len(d), more, errors.Join(errs...))
}

// damagedSet remembers, for the life of a DB, the records a sweep found
// damaged: the sweep steps over them without reading them again, reports
// each once (not at every interval), and does not open a write
// transaction for them alone.
type damagedSet struct {
	mu sync.Mutex
	m  map[Hash]struct{}
}

// has reports whether the record of the hash in v is known damaged.
func (s *damagedSet) has(v []byte) bool {
	if len(v) != len(Hash{}) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[Hash(v)]
	return ok
}

// addNew records d's records and returns those not known before.
func (s *damagedSet) addNew(d damage) damage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fresh damage
	for _, r := range d {
		if _, ok := s.m[r.h]; ok {
			continue
		}
		if s.m == nil {
			s.m = map[Hash]struct{}{}
		}
		s.m[r.h] = struct{}{}
		fresh = append(fresh, r)
	}
	return fresh
}

// remove drops d's records from the set, so that the next pass to meet
// them reports them: d was returned by addNew to a pass that then
// panicked before reporting it.
func (s *damagedSet) remove(d damage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range d {
		delete(s.m, r.h)
	}
}

// forget drops d's records from the cache, so that a token whose record
// was damaged after it was cached is not validated from memory.
func (db *DB) forget(d damage) {
	for _, r := range d {
		db.cache.beginDelete(r.h)
		db.cache.endDelete(r.h, true)
	}
}

// deleteDamaged is [deletes.delete] for a record that does not decode.
func (d *deletes) deleteDamaged(tx *bolt.Tx, h Hash) error {
	d.announce(tx, h)
	return deleteDamaged(tx, h)
}

// deleteDamaged deletes h's record, which does not decode, and every index
// entry that leads to it. The record's own fields (subject, deadline, id)
// cannot be trusted to find its entries, so the indexes are walked: the
// ids entries that name h's first half (bucket.go), then the subjects and
// expiry entries that end with those ids. A repair, not a hot path.
func deleteDamaged(tx *bolt.Tx, h Hash) error {
	errs := []error{tx.Bucket(bucketTokens).Delete(h[:]), addCount(tx, -1)}
	ids := tx.Bucket(bucketIDs)
	gone := map[string]bool{}
	c := ids.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(v) >= 16 && string(v[:16]) == string(h[:16]) {
			gone[string(k)] = true
		}
	}
	for id := range gone {
		errs = append(errs, ids.Delete([]byte(id)))
	}
	for _, name := range [][]byte{bucketSubjects, bucketExpiry, bucketFamilies} {
		b := tx.Bucket(name)
		if b == nil {
			continue // families, in a file older than issue 17
		}
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) >= 16 && (!bytes.Equal(name, bucketFamilies) || len(k) == 32) && gone[string(k[len(k)-16:])] {
				keys = append(keys, bytes.Clone(k))
			}
		}
		for _, k := range keys {
			errs = append(errs, b.Delete(k))
		}
	}
	return errors.Join(errs...)
}
