package tokenstore

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// errHashCollision is a new token whose hash the file already holds:
// 2^-208 per pair of tokens of one millisecond, so a broken random source.
var errHashCollision = errors.New("tokenstore: token hash collision (is the random source broken?)")

// putRecord writes a new record and its index entries.
func putRecord(tx *bolt.Tx, h Hash, rec *record) error {
	if tx.Bucket(bucketTokens).Get(h[:]) != nil {
		return errHashCollision
	}
	var errs []error
	for b, e := range rec.indexEntries(h) {
		errs = append(errs, putEntry(tx.Bucket(entryBucket[b]), b, e.k, e.v))
	}
	return errors.Join(append(errs, putFamilyEntry(tx, rec), addCount(tx, 1))...)
}

// deletes deletes records for one write call and keeps the cache
// coherent: each token is announced to the cache inside the transaction,
// before it can commit, and released by end once the call's transaction
// has ended (see cache.beginDelete). A write's fn may run more than once;
// end releases every run's announcements.
type deletes struct {
	cache  *cache
	hashes []Hash
	// gone[i]: the transaction that deleted hashes[i] committed. Not the
	// caller's error: a refusal commits what its fn wrote before it, and
	// a run rolled back for another member's failure runs again.
	gone []bool
}

// delete removes h's record and index entries in tx; rec is as getRecord
// read it in tx.
func (d *deletes) delete(tx *bolt.Tx, h Hash, rec *record) error {
	d.announce(tx, h)
	return deleteRecord(tx, h, rec)
}

// announce tells the cache that tx deletes h, and notes when tx commits.
func (d *deletes) announce(tx *bolt.Tx, h Hash) {
	d.cache.beginDelete(h)
	i := len(d.hashes)
	d.hashes, d.gone = append(d.hashes, h), append(d.gone, false)
	tx.OnCommit(func() { d.gone[i] = true }) // d.gone as of the commit, after every append of the run
}

// end releases the tokens announced by delete; call it after the
// transaction has ended, committed or not. A token whose delete did not
// commit keeps what the cache holds of it (see cache.endDelete).
func (d *deletes) end() {
	for i, h := range d.hashes {
		d.cache.endDelete(h, d.gone[i])
	}
	d.hashes, d.gone = nil, nil
}

// deleteRecord removes a record and its index entries.
func deleteRecord(tx *bolt.Tx, h Hash, rec *record) error {
	var errs []error
	for b, e := range rec.indexEntries(h) {
		errs = append(errs, tx.Bucket(entryBucket[b]).Delete(e.k))
	}
	return errors.Join(append(errs, deleteFamilyKey(tx, rec.familyTokenKey()), addCount(tx, -1))...)
}

func addCount(tx *bolt.Tx, delta int64) error {
	m := tx.Bucket(bucketMeta)
	n := int64(beUint64(m.Get(metaCount))) + delta
	return m.Put(metaCount, beAppend64(nil, uint64(n)))
}

// getRecord reads the record of h inside tx, with its last use and filed
// deadline from its ids entry.
func getRecord(tx *bolt.Tx, h Hash) (record, error) {
	return getRecordIn(tx.Bucket(bucketTokens), tx.Bucket(bucketIDs), h)
}

// getRecordIn is getRecord on the tokens and ids buckets of a
// transaction, opened by the caller (a kept read transaction keeps them
// open: readTx.bucket).
func getRecordIn(tokens, ids *bolt.Bucket, h Hash) (record, error) {
	v := tokens.Get(h[:])
	if v == nil {
		return record{}, ErrNotFound
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return rec, err
	}
	return rec, readIDEntry(ids, h, &rec)
}

// readIDEntry sets rec's last use and filed deadline from its entry in
// ids, the ids bucket, rec being h's record as decoded from the tokens
// bucket.
func readIDEntry(ids *bolt.Bucket, h Hash, rec *record) error {
	// A copy: the checksum (crc32) leaks its argument, and slicing rec.id
	// would move the caller's record to the heap on every read.
	id := rec.id
	e, err := decodeIDValue(id[:], ids.Get(id[:]))
	if err != nil {
		return fmt.Errorf("token %s: %w", id, err)
	}
	if !e.of(h) {
		return fmt.Errorf("%w: the ids entry of token %s names another record", ErrCorrupt, id)
	}
	rec.lastUsed, rec.filed = e.used, e.filed
	return nil
}

// getByID reads the record of the token with the given id inside tx. It
// returns ErrNotFound for a token a sweep is deleting.
func getByID(tx *bolt.Tx, id []byte) (Hash, record, error) {
	v := tx.Bucket(bucketIDs).Get(id)
	if v == nil {
		return Hash{}, record{}, ErrNotFound
	}
	e, err := decodeIDValue(id, v)
	if err != nil {
		return Hash{}, record{}, err
	}
	h, rv := recordOf(tx.Bucket(bucketTokens), id, &e)
	if rv == nil {
		if tx.Bucket(bucketMeta).Get(metaSweeping) != nil {
			return h, record{}, ErrNotFound // swept: its ids entry goes in the next pass (sweep.go)
		}
		return h, record{}, fmt.Errorf("%w: the ids entry %x points at no record", ErrCorrupt, id)
	}
	rec, err := getRecord(tx, h)
	if err == nil && string(rec.id[:]) != string(id) {
		err = fmt.Errorf("%w: the ids entry %x points at token %s", ErrCorrupt, id, rec.id)
	}
	return h, rec, err
}
