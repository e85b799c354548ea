package tokenstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// upgrade brings a file of an older schema to schemaVersion, once, in one
// write transaction: a crash before it commits leaves the old file as it
// was, and the next Open upgrades it again; after it commits, there is
// nothing left to do. A read-only store cannot upgrade, and refuses the
// file.
//
// Schema 1 → 2: records lose their last use (version 1 → 2); the ids
// entries gain it, with the filed deadline (the schema-1 expiry entry's,
// which was exact); subjects and expiry entries lose their values (the
// hash, now reached through the id). The transaction rewrites every
// token's pages: on a file of 1M tokens, memory for a copy of the file's
// pages while it runs.
func (db *DB) upgrade() error {
	var schema uint32
	if err := view(db.bolt, func(tx *bolt.Tx) error {
		schema = beUint32(tx.Bucket(bucketMeta).Get(metaSchema))
		return nil
	}); err != nil {
		return err
	}
	switch {
	case schema == schemaVersion:
		return nil
	case schema != 1:
		return fmt.Errorf("%w: schema version %d is not one this build reads", ErrCorrupt, schema)
	case db.ro:
		return fmt.Errorf("%w: the file is of schema 1, which this build upgrades on its first Open without ReadOnly", ErrReadOnly)
	}
	start := time.Now()
	n := 0
	var damaged []string
	err := db.commit.update(func(tx *bolt.Tx) (err error) {
		n, damaged, err = upgradeFrom1(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("upgrade from schema 1: %w", boltErr(err))
	}
	db.log.Info("tokenstore: upgraded the file from schema 1 to 2", "tokens", n, "took", time.Since(start))
	if len(damaged) > 0 {
		// Issue 12: a damaged record costs only itself. It stays as it
		// was, so that it reads as ErrCorrupt; Check names it, and
		// RevokeID removes it.
		db.log.Warn("tokenstore: the upgrade carried damaged records over as they were; tokenstore check names them",
			"damaged", len(damaged), "entries", damaged[:min(len(damaged), 100)])
	}
	return nil
}

// upgradeFrom1 rewrites a schema-1 file as schema 2 in tx and returns the
// tokens it holds and the damaged entries it carried over. Index entries
// are rewritten before the records they read.
//
// A damaged record costs only itself (issue 12): it is kept as it was, a
// version-1 record that schema 2 reads as ErrCorrupt, and its ids entry
// becomes a schema-2 entry that leads to it (last use and filed deadline
// 0), so that Get and RevokeID reach it and Check names it. An ids entry
// that leads nowhere is kept as it was, which schema 2 also reads as
// damaged. Nothing damaged is ever made to look valid.
func upgradeFrom1(tx *bolt.Tx) (int, []string, error) {
	tokens, ids := tx.Bucket(bucketTokens), tx.Bucket(bucketIDs)
	var usedMax int64
	var damaged []string
	err := rewriteValues(ids, func(k, v []byte) ([]byte, error) {
		if len(v) != len(Hash{}) || len(k) != 16 {
			damaged = append(damaged, fmt.Sprintf("ids entry %x", k))
			return v, nil
		}
		rv := tokens.Get(v)
		if rv == nil {
			damaged = append(damaged, fmt.Sprintf("ids entry %x (no record)", k))
			return v, nil
		}
		rec, err := decodeRecordV1(rv)
		if err != nil || string(rec.id[:]) != string(k) {
			damaged = append(damaged, fmt.Sprintf("token %x", k))
			return idValue(k, Hash(v), 0, 0), nil
		}
		usedMax = max(usedMax, rec.lastUsed)
		return idValue(k, Hash(v), rec.lastUsed, rec.deadline()), nil
	})
	if err != nil {
		return 0, nil, err
	}
	for _, name := range [][]byte{bucketSubjects, bucketExpiry} {
		if err := rewriteValues(tx.Bucket(name), func(k, v []byte) ([]byte, error) { return []byte{}, nil }); err != nil {
			return 0, nil, err
		}
	}
	n := 0
	err = rewriteValues(tokens, func(k, v []byte) ([]byte, error) {
		n++
		rec, err := decodeRecordV1(v)
		if err != nil {
			return v, nil // kept as it was: see above
		}
		return rec.encode(nil), nil
	})
	if err != nil {
		return 0, nil, err
	}
	m := tx.Bucket(bucketMeta)
	return n, damaged, errors.Join(m.Put(metaSchema, beAppend32(nil, schemaVersion)), m.Put(metaCount, beAppend64(nil, uint64(n))), raiseUsedMax(tx, usedMax))
}

// rewriteValues replaces every value of b by what fn returns for it. It
// reads a chunk of entries, then writes them, so that no cursor walks a
// page that a write has just changed.
func rewriteValues(b *bolt.Bucket, fn func(k, v []byte) ([]byte, error)) error {
	const chunk = 4096
	var after []byte
	for {
		var keys, vals [][]byte
		c := b.Cursor()
		k, v := c.First()
		if after != nil {
			k, v = c.Seek(after)
			if k != nil && string(k) == string(after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(keys) < chunk; k, v = c.Next() {
			keys, vals = append(keys, slices.Clone(k)), append(vals, slices.Clone(v))
		}
		if len(keys) == 0 {
			return nil
		}
		for i, k := range keys {
			nv, err := fn(k, vals[i])
			if err != nil {
				return err
			}
			if err := b.Put(k, nv); err != nil {
				return err
			}
		}
		after = keys[len(keys)-1]
	}
}

// decodeRecordV1 parses a schema-1 record: version 1, which held the last
// use at 10:18, ahead of the policy (so ttl 18:26, max 26:34, id 34:50,
// subject length at 50).
func decodeRecordV1(b []byte) (record, error) {
	var r record
	const fixed = 51
	if len(b) < fixed+1+4 {
		return r, corrupt("%d bytes is too short", len(b))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return r, corrupt("checksum mismatch")
	}
	if body[0] != 1 {
		return r, corrupt("version %d in a schema-1 file", body[0])
	}
	kind := policyKind(body[1])
	if kind != kindAbsolute && kind != kindSliding {
		return r, corrupt("unknown policy kind %d", kind)
	}
	r.created = int64(binary.BigEndian.Uint64(body[2:]))
	r.lastUsed = int64(binary.BigEndian.Uint64(body[10:]))
	r.policy = Policy{
		kind: kind,
		ttl:  time.Duration(binary.BigEndian.Uint64(body[18:])) * time.Millisecond,
		max:  time.Duration(binary.BigEndian.Uint64(body[26:])) * time.Millisecond,
	}
	copy(r.id[:], body[34:50])
	return decodeRecordTail(r, body[fixed-1:])
}
