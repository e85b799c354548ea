package tokenstore

import (
	"errors"

	bolt "go.etcd.io/bbolt"
)

// putRecord writes a new record and its index entries.
func putRecord(tx *bolt.Tx, h Hash, rec *record) error {
	tokens := tx.Bucket(bucketTokens)
	if tokens.Get(h[:]) != nil {
		return errors.New("tokenstore: token hash collision") // 2^-128: a broken random source
	}
	return errors.Join(
		tokens.Put(h[:], rec.encode(make([]byte, 0, 64+len(rec.subject)))),
		tx.Bucket(bucketIDs).Put(rec.id[:], h[:]),
		tx.Bucket(bucketSubjects).Put(subjectKey(rec.subject, rec.id), h[:]),
		tx.Bucket(bucketExpiry).Put(expiryKey(rec.deadline(), rec.id), h[:]),
		addCount(tx, 1),
	)
}

// deletes deletes records for one write call and keeps the cache
// coherent: each token is announced to the cache inside the transaction,
// before it can commit, and released by end once the call's transaction
// has ended (see cache.beginDelete). A write's fn may run more than once;
// end releases every run's announcements.
type deletes struct {
	cache  *cache
	hashes []Hash
}

// delete removes h's record and index entries in tx.
func (d *deletes) delete(tx *bolt.Tx, h Hash, rec *record) error {
	d.cache.beginDelete(h)
	d.hashes = append(d.hashes, h)
	return deleteRecord(tx, h, rec)
}

// end releases the tokens announced by delete; call it after the
// transaction has ended, committed or not.
func (d *deletes) end() {
	for _, h := range d.hashes {
		d.cache.endDelete(h)
	}
	d.hashes = nil
}

// deleteRecord removes a record and its index entries.
func deleteRecord(tx *bolt.Tx, h Hash, rec *record) error {
	return errors.Join(
		tx.Bucket(bucketTokens).Delete(h[:]),
		tx.Bucket(bucketIDs).Delete(rec.id[:]),
		tx.Bucket(bucketSubjects).Delete(subjectKey(rec.subject, rec.id)),
		tx.Bucket(bucketExpiry).Delete(expiryKey(rec.deadline(), rec.id)),
		addCount(tx, -1),
	)
}

func addCount(tx *bolt.Tx, delta int64) error {
	m := tx.Bucket(bucketMeta)
	n := int64(beUint64(m.Get(metaCount))) + delta
	return m.Put(metaCount, beAppend64(nil, uint64(n)))
}

// getRecord reads the record of h inside tx.
func getRecord(tx *bolt.Tx, h Hash) (record, error) {
	v := tx.Bucket(bucketTokens).Get(h[:])
	if v == nil {
		return record{}, ErrNotFound
	}
	return decodeRecord(v)
}
