package tokenstore

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the file to w while the store stays
// in use, and returns the bytes written.
//
// w may be as slow as it likes (a pipe, a network stream): unless the
// store is ReadOnly, the copy is first taken, in one read transaction, into a temporary file beside the
// store (created 0600 and removed before Backup returns), then written to
// w with no transaction open. A write that must grow the file waits for
// every open read transaction, so this way no call waits on w; they wait
// at most as long as copying the file on local disk takes. It needs free
// space for one more copy of the file beside it (or, when that directory
// cannot be written, in [os.TempDir]). Backup stops, returning
// ctx's error, when ctx is done while it writes to w.
func (db *DB) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := db.begin(ctx, false); err != nil {
		return 0, wrap("backup", err)
	}
	if db.ro {
		// No write of this process can wait on the transaction; a writer
		// of another process cannot open the file while it is open here.
		var n int64
		err := view(db.bolt, func(tx *bolt.Tx) error {
			var err error
			n, err = tx.WriteTo(ctxWriter{ctx, w})
			if err != nil && ctx.Err() != nil {
				// bbolt's WriteTo flattens its writer's error into text
				// ("meta 1 copy: context canceled"): keep ctx's for errors.Is.
				err = ctx.Err()
			}
			return err
		})
		return n, wrap("backup", boltErr(err))
	}
	spool, err := os.CreateTemp(filepath.Dir(db.path), "."+filepath.Base(db.path)+".backup-*")
	if err != nil { // a directory the process may not write in: the system's
		spool, err = os.CreateTemp("", "tokenstore-backup-*")
	}
	if err != nil {
		return 0, wrap("backup", err)
	}
	// On Unix the open file outlives its name: removed now, nothing is
	// left behind should the process die during the backup.
	removed := os.Remove(spool.Name()) == nil
	defer func() {
		_ = spool.Close()
		if !removed {
			_ = os.Remove(spool.Name())
		}
	}()
	err = view(db.bolt, func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(spool)
		return err
	})
	if err != nil {
		return 0, wrap("backup", boltErr(err))
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return 0, wrap("backup", err)
	}
	n, err := io.Copy(w, ctxReader{ctx, spool})
	return n, wrap("backup", err)
}

// ctxWriter writes to w until ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// ctxReader reads from r until ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// BackupFile writes a consistent copy to path through a temporary file in
// the same directory, fsync'd and then renamed, so path never holds half a
// backup.
//
// When path is a symbolic link, the file it points at is replaced and the
// link kept. A path that is the store's own file (by any name) is refused
// with [fs.ErrInvalid], as is one that names a FIFO, a device or a socket;
// a directory with [syscall.EISDIR]. Nothing is written then.
func (db *DB) BackupFile(ctx context.Context, path string) (int64, error) {
	path = realPath(path)
	if err := db.checkBackupPath(path); err != nil {
		return 0, wrap("backup "+path, err)
	}
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
	if err == nil {
		// The rename is durable only once the directory is: without this
		// a power cut may leave the old backup, or none, under path.
		err = syncDir(filepath.Dir(path))
	}
	return n, wrap("backup", err)
}

// syncDir fsyncs the directory dir, so that a rename into it survives a
// crash. Windows cannot sync a directory (its renames are metadata the
// filesystem journals): there it does nothing.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkBackupPath refuses a backup path that exists and is not a file a
// backup may replace. Renaming the copy over the store's own file would
// leave the store writing to the unlinked old one, losing every later
// write at the next Open; over a FIFO it would leave its reader waiting.
func (db *DB) checkBackupPath(path string) error {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return nil // missing: the backup creates it
	case st.IsDir():
		return fmt.Errorf("%w (name the backup file, not its directory)", syscall.EISDIR)
	case !st.Mode().IsRegular():
		return fmt.Errorf("%w: not a regular file (%s); to stream a backup, use Backup with a writer", fs.ErrInvalid, st.Mode().Type())
	}
	if own, err := os.Stat(db.path); err == nil && os.SameFile(st, own) {
		return fmt.Errorf("%w: it is the store's own file %s: name another file", fs.ErrInvalid, db.path)
	}
	return nil
}

// Compact rewrites the file at path without its free pages (a bbolt file
// does not shrink when tokens are deleted) and atomically replaces it.
// The file must not be open elsewhere: Compact takes its lock, waiting up
// to opts.LockTimeout. It returns the sizes before and after.
//
// Compact acts on the file as the operator keeps it: when path is a
// symbolic link, the file it points at is rewritten and the link kept;
// the new file has the old one's mode and owner (Compact fails, leaving
// the file as it was, when it may not give it that owner). A file with
// more than one hard link is refused (fs.ErrInvalid): the new file could
// take only one of its names.
func Compact(path string, opts *Options) (before, after int64, err error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.SweepInterval, o.TouchInterval = -1, -1
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return 0, 0, wrap("compact", err)
	}
	if st, err := os.Stat(real); err == nil && st.Mode().IsRegular() && hardLinks(st) > 1 {
		// The rename would give this name a new file and leave the
		// other names on the old one: two stores where there was one.
		return 0, 0, wrap("compact", fmt.Errorf("%w: %s has %d hard links; compacting would leave the other names on the old, uncompacted file (remove them, or compact a copy and copy it back with the application stopped)", fs.ErrInvalid, real, hardLinks(st)))
	}
	db, err := Open(real, &o)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if db != nil {
			_ = db.Close()
		}
	}()
	st, err := os.Stat(real)
	if err != nil {
		return 0, 0, wrap("compact", err)
	}
	tmpPath := real + ".compact-" + uuid.NewString()
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
	if err == nil {
		err = os.Chmod(tmpPath, st.Mode().Perm())
	}
	if err == nil {
		err = keepOwner(tmpPath, st)
	}
	if err != nil {
		return 0, 0, wrap("compact", err)
	}
	// Replace while still holding the old file's lock, so no writer slips in between.
	if err := os.Rename(tmpPath, real); err != nil {
		return 0, 0, wrap("compact", err)
	}
	cerr := db.Close()
	db = nil
	if cerr != nil {
		return 0, 0, wrap("compact", cerr)
	}
	nst, err := os.Stat(real)
	if err != nil {
		return 0, 0, wrap("compact", err)
	}
	return st.Size(), nst.Size(), nil
}

// realPath is path with its symbolic links resolved, or path itself when
// it does not exist yet.
func realPath(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return path
}
