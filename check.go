package tokenstore

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Check verifies the file: bbolt's own consistency check (pages, freelist),
// then tokenstore's: every record's checksum, every index entry points at a
// record that agrees with it, every record is in each index, and the
// stored count matches. It returns one line per problem, naming token IDs
// (never tokens), and an error only when it could not run. It never
// repairs anything and works on a ReadOnly store.
func (db *DB) Check(ctx context.Context) (problems []string, err error) {
	if err := db.begin(ctx, false); err != nil {
		return nil, wrap("check", err)
	}
	defer func() {
		if r := recover(); r != nil { // bbolt panics on some damaged pages
			problems = append(problems, fmt.Sprintf("bbolt: %v", r))
		}
	}()
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	err = db.bolt.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			add("bbolt: %v", e)
		}
		if len(problems) > 0 {
			return nil // the tree itself is damaged: walking it could panic
		}
		tokens, ids, subjects, expiry := tx.Bucket(bucketTokens), tx.Bucket(bucketIDs), tx.Bucket(bucketSubjects), tx.Bucket(bucketExpiry)
		n := 0
		c := tokens.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			n++
			if len(k) != len(Hash{}) {
				add("tokens: key of %d bytes", len(k))
				continue
			}
			rec, err := decodeRecord(v)
			if err != nil {
				add("tokens: record %x…: %v", k[:6], err)
				continue
			}
			id := rec.id
			if got := ids.Get(id[:]); string(got) != string(k) {
				add("token %s: missing or wrong in the ids index", id)
			}
			if got := subjects.Get(subjectKey(rec.subject, id)); string(got) != string(k) {
				add("token %s: missing or wrong in the subjects index", id)
			}
			if got := expiry.Get(expiryKey(rec.deadline(), id)); string(got) != string(k) {
				add("token %s: missing or wrong in the expiry index", id)
			}
		}
		if want := int(beUint64(tx.Bucket(bucketMeta).Get(metaCount))); want != n {
			add("meta: count says %d tokens, the file holds %d", want, n)
		}
		// Every index entry must lead to a record that agrees with it.
		index := func(name string, b *bolt.Bucket, agrees func(k []byte, rec *record) bool) {
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				rv := tokens.Get(v)
				if rv == nil {
					add("%s: entry %x points at no record", name, k)
					continue
				}
				if rec, err := decodeRecord(rv); err == nil && !agrees(k, &rec) {
					add("%s: entry %x disagrees with token %s", name, k, rec.id)
				}
			}
		}
		index("ids", ids, func(k []byte, r *record) bool { return string(k) == string(r.id[:]) })
		index("subjects", subjects, func(k []byte, r *record) bool { return string(k) == string(subjectKey(r.subject, r.id)) })
		index("expiry", expiry, func(k []byte, r *record) bool { return string(k) == string(expiryKey(r.deadline(), r.id)) })
		return nil
	})
	if err != nil {
		return problems, wrap("check", boltErr(err))
	}
	return problems, nil
}

// Backup writes a consistent copy of the file to w while the store stays
// in use (one read transaction), and returns the bytes written.
func (db *DB) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := db.begin(ctx, false); err != nil {
		return 0, wrap("backup", err)
	}
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, wrap("backup", boltErr(err))
}

// BackupFile writes a consistent copy to path through a temporary file in
// the same directory, fsync'd and then renamed, so path never holds half a
// backup.
func (db *DB) BackupFile(ctx context.Context, path string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, wrap("backup", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	n, err := db.Backup(ctx, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return n, wrap("backup", err)
}

// Compact rewrites the file at path without its free pages (a bbolt file
// does not shrink when tokens are deleted) and atomically replaces it.
// The file must not be open elsewhere: Compact takes its lock, waiting up
// to opts.LockTimeout. It returns the sizes before and after.
func Compact(path string, opts *Options) (before, after int64, err error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.SweepInterval, o.TouchInterval = -1, -1
	db, err := Open(path, &o)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if db != nil {
			_ = db.Close()
		}
	}()
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0, wrap("compact", err)
	}
	tmpPath := path + ".compact-" + uuid.NewString()
	dst, err := bolt.Open(tmpPath, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		return 0, 0, wrap("compact", err)
	}
	defer os.Remove(tmpPath) // after the rename: a no-op
	err = bolt.Compact(dst, db.bolt, 64<<20)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = dst.Close()
		return 0, 0, wrap("compact", err)
	}
	// Replace while still holding the old file's lock, so no writer slips in between.
	if err := os.Rename(tmpPath, path); err != nil {
		return 0, 0, wrap("compact", err)
	}
	cerr := db.Close()
	db = nil
	if cerr != nil {
		return 0, 0, wrap("compact", cerr)
	}
	nst, err := os.Stat(path)
	if err != nil {
		return 0, 0, wrap("compact", err)
	}
	return st.Size(), nst.Size(), nil
}
