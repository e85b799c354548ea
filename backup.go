package tokenstore

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the file to w while the store stays
// in use (one read transaction), and returns the bytes written.
func (db *DB) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := db.begin(ctx, false); err != nil {
		return 0, wrap("backup", err)
	}
	var n int64
	err := view(db.bolt, func(tx *bolt.Tx) error {
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
	err = func() (err error) {
		defer recoverCorrupt(&err) // bbolt panics on some damaged pages
		return bolt.Compact(dst, db.bolt, 64<<20)
	}()
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
