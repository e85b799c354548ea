package tokenstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// openBolt opens the bbolt file, turning its errors (and the panics some
// damaged files cause in it) into tokenstore's.
//
// A file cut short (a copy that failed, a full disk) keeps valid meta pages
// that point past its end, and bbolt reads the missing pages with no
// check: its read-write Open loads the freelist page at once, which kills
// the process (SIGSEGV or SIGBUS through the memory map, not a panic that
// recover could catch); so does a read-only Open that preloads the
// freelist. So an existing file is first opened read-only without
// preloading, which reads nothing but the two meta pages, and its size
// checked against them, then its tree's shape (probeFile); only then is it
// opened for real.
func openBolt(path string, o *Options) (bdb *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			// bbolt panicked inside Open: its file descriptor, and the
			// lock, are lost until the process ends.
			bdb, err = nil, wrap("open "+path, fmt.Errorf("%w: bbolt: %v", ErrCorrupt, r))
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // see view
	if fi, statErr := os.Stat(path); statErr == nil && fi.Size() > 0 {
		probe, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout, ReadOnly: true})
		if err != nil {
			return nil, boltOpenErr(path, o, err)
		}
		err = probeFile(probe)
		if cerr := probe.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, wrap("open "+path, err)
		}
	}
	bo := &bolt.Options{
		Timeout:  o.LockTimeout,
		ReadOnly: o.ReadOnly,
		// The hashmap freelist allocates in O(1) where the array one scans;
		// it matters once sweeps have freed many pages.
		FreelistType: bolt.FreelistMapType,
		// Written on every commit, the freelist costs what the file's free
		// pages do: the 1M-token benchmark file has 30,000 of them, and
		// each Issue wrote 240 KB of freelist (and sorted it: the hashmap
		// freelist keeps no order) and took 20 ms, against 2.1 ms for a
		// bare one-key Update; without it, about 3 ms. etcd runs bbolt the
		// same way. The price is a walk of the whole file to rebuild the
		// freelist when it is missing: Close writes it (syncFreelist), so
		// that is only after a crash (about 0.5 s at 1M tokens), or on a
		// rolled-back write transaction, which is why group members refuse
		// rather than fail (commit.go).
		NoFreelistSync: !o.ReadOnly,
		// A reader preloads the freelist too, so that FileInfo can count
		// free pages.
		PreLoadFreelist: o.ReadOnly,
	}
	bdb, err = bolt.Open(path, 0o600, bo)
	if err != nil {
		return nil, boltOpenErr(path, o, err)
	}
	if err := checkFileSize(bdb); err != nil {
		_ = bdb.Close()
		return nil, wrap("open "+path, err)
	}
	return bdb, nil
}

// checkPathKind refuses a path that names an existing directory or
// another thing that is not a regular file (a FIFO would block Open, a
// device would be written over), naming the cause rather than calling
// the file damaged. A symbolic link is followed: the store opens the file
// it points at.
func checkPathKind(path string) error {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return nil // missing (bbolt creates it), or an error bolt.Open reports
	case st.IsDir():
		return fmt.Errorf("%w (name the token file, not its directory)", syscall.EISDIR)
	case !st.Mode().IsRegular():
		return fmt.Errorf("%w: not a regular file (%s)", fs.ErrInvalid, st.Mode().Type())
	}
	return nil
}

// boltOpenErr turns an error of bolt.Open into tokenstore's.
func boltOpenErr(path string, o *Options, err error) error {
	op := "open " + path
	if pe, ok := errors.AsType[*fs.PathError](err); ok && pe.Path == path {
		op = "" // it says "open <path>: ..." itself
	}
	switch {
	case strings.Contains(err.Error(), "file size too small"): // bbolt has no sentinel for a file under two pages
		return wrap(op, fmt.Errorf("%w: %v", ErrCorrupt, err))
	case errors.Is(err, berrors.ErrTimeout):
		return wrap(op, fmt.Errorf("%w (waited %s; is the application that uses it running?)", ErrLocked, o.LockTimeout))
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return wrap(op, fmt.Errorf("%w: %v", ErrCorrupt, err))
	case (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)) && !o.ReadOnly:
		if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
			return wrap(op, fmt.Errorf("%w (the file does not exist, and this user may not create it in %s)", err, filepath.Dir(path)))
		}
		return wrap(op, fmt.Errorf("%w (to only read it, open it with Options.ReadOnly)", err))
	}
	return wrap(op, err)
}

// checkFileSize refuses a file shorter than its meta page says (see
// openBolt). It reads no page but the meta.
func checkFileSize(bdb *bolt.DB) error {
	fi, err := os.Stat(bdb.Path())
	if err != nil {
		return err
	}
	tx, err := bdb.Begin(false)
	if err != nil {
		return err
	}
	want := tx.Size()
	_ = tx.Rollback()
	if fi.Size() < want {
		return fmt.Errorf("%w: the file is %d bytes, its header says %d (truncated?)", ErrCorrupt, fi.Size(), want)
	}
	return nil
}

// checkSchema refuses files that are not tokenstore's and sets up new ones.
func (db *DB) checkSchema() (err error) {
	fresh := false
	err = view(db.bolt, func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("%w: a bbolt file of another application (no tokenstore meta bucket)", ErrCorrupt)
			}
			fresh = true
			return nil
		}
		if string(m.Get(metaApp)) != string(appName) {
			return fmt.Errorf("%w: meta bucket does not name tokenstore", ErrCorrupt)
		}
		v := m.Get(metaSchema)
		if len(v) != 4 {
			return fmt.Errorf("%w: no schema version", ErrCorrupt)
		}
		if s := beUint32(v); s > schemaVersion {
			return fmt.Errorf("%w: schema version %d is newer than this build's %d; upgrade tokenstore", ErrCorrupt, s, schemaVersion)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, name)
			}
		}
		return nil
	})
	if err != nil || !fresh {
		return err
	}
	if db.ro {
		return fmt.Errorf("%w: the file was never initialised (open it once without ReadOnly)", ErrCorrupt)
	}
	return db.bolt.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		return errors.Join(
			m.Put(metaApp, appName),
			m.Put(metaSchema, beAppend32(nil, schemaVersion)),
			m.Put(metaCount, beAppend64(nil, 0)),
		)
	})
}

// bbolt's freelist page: the page header (flags freelistPage), then count
// page IDs of 8 bytes; a count of 0xFFFF means the first of those 8-byte
// slots holds the real count, and the IDs follow it.
const (
	freelistPage      = 0x10
	freelistCountMark = 0xFFFF
	freelistChunk     = 8192 // IDs checked per read
)

// checkFreelist says what is wrong with the freelist page id of a file of
// hwm pages, or "". bbolt reads the freelist at Open (read-write, and
// read-only with PreLoadFreelist) trusting its count: it allocates the
// count's worth of IDs first, so a count of 2^34 is a fatal "out of
// memory" that no recover reaches, and a count past the page reads past
// it. A free ID out of the file is a panic at the first write that
// allocates it; one that is a page of the tree (in tree, the pages the
// walk reached) is written over by it. The IDs are read a chunk at a
// time, so the check holds 64 KB whatever the freelist's size.
func checkFreelist(f *os.File, pageSize, hwm, id uint64, tree pageSet) string {
	if id < 2 || id >= hwm {
		return fmt.Sprintf("freelist page %d: out of range [2, %d)", id, hwm)
	}
	hdr := make([]byte, pageHeader+8)
	if _, err := f.ReadAt(hdr, int64(id*pageSize)); err != nil {
		return fmt.Sprintf("freelist page %d: %v", id, err)
	}
	if got := binary.NativeEndian.Uint64(hdr); got != id {
		return fmt.Sprintf("freelist page %d: says it is page %d", id, got)
	}
	if flags := binary.NativeEndian.Uint16(hdr[8:]); flags != freelistPage {
		return fmt.Sprintf("freelist page %d: not a freelist page (flags %#x)", id, flags)
	}
	pages := 1 + uint64(binary.NativeEndian.Uint32(hdr[12:]))
	if id+pages > hwm {
		return fmt.Sprintf("freelist page %d: %d overflow pages run past the high-water mark %d", id, pages-1, hwm)
	}
	for p := id; p < id+pages; p++ {
		if tree.has(p) {
			return fmt.Sprintf("freelist page %d: page %d is also in the tree", id, p)
		}
	}
	count, at := uint64(binary.NativeEndian.Uint16(hdr[10:])), uint64(pageHeader)
	if count == freelistCountMark {
		count, at = binary.NativeEndian.Uint64(hdr[pageHeader:]), pageHeader+8
	}
	if count > (pages*pageSize-at)/8 {
		return fmt.Sprintf("freelist page %d: %d page IDs do not fit in its %d pages", id, count, pages)
	}
	buf := make([]byte, 8*min(count, freelistChunk))
	for done := uint64(0); done < count; {
		b := buf[:8*min(count-done, freelistChunk)]
		if _, err := f.ReadAt(b, int64(id*pageSize+at+8*done)); err != nil {
			return fmt.Sprintf("freelist page %d: %v", id, err)
		}
		for i := 0; i < len(b); i += 8 {
			switch free := binary.NativeEndian.Uint64(b[i:]); {
			case free < 2 || free >= hwm:
				return fmt.Sprintf("freelist page %d: free page %d out of range [2, %d)", id, free, hwm)
			case free >= id && free < id+pages:
				return fmt.Sprintf("freelist page %d: free page %d is the freelist's own", id, free)
			case tree.has(free):
				return fmt.Sprintf("freelist page %d: free page %d is also in the tree", id, free)
			}
		}
		done += uint64(len(b)) / 8
	}
	return ""
}

// probeFile checks a file, opened read-only with nothing loaded but its
// meta pages, for what would make bbolt's own Open fault or go back in
// time: a file shorter than its pages, a damaged meta page, or damaged
// pages when the freelist must be rebuilt from them (which costs a walk of
// the file, as bbolt's rebuild does anyway) or else a freelist bbolt
// could not load (checkFreelist); and for a tree a later search
// could not get out of (treeSound).
func probeFile(probe *bolt.DB) error {
	if err := checkFileSize(probe); err != nil {
		return err
	}
	f, err := os.Open(probe.Path())
	if err != nil {
		return err
	}
	defer f.Close()
	pageSize := uint64(probe.Info().PageSize)
	// Fail closed: with a meta page damaged, bbolt opens the file one
	// transaction back, and that one may have been a revocation.
	newest, p := checkMeta(f, pageSize)
	if p != "" {
		return fmt.Errorf("%w: bbolt %s: the file may have lost its last transaction; restore a backup", ErrCorrupt, p)
	}
	// bbolt's size of the file, tx.Size, is hwm × pageSize in an int64:
	// 2^52 pages more than the file holds wrap to its own size, which
	// passed checkFileSize, and bbolt's tx.Check then walked 2^52 pages.
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if pages := uint64(fi.Size()) / pageSize; newest.hwm > pages {
		return fmt.Errorf("%w: the file holds %d pages of %d bytes, its header says %d (truncated?)", ErrCorrupt, pages, pageSize, newest.hwm)
	}
	if newest.synced() {
		return treeSound(probe, f, newest.freelist)
	}
	return pagesSound(probe) // which checks the tree's shape too
}

// treeSound refuses a file whose B+tree bbolt could not descend: a branch
// element that points back at a page above it (or at any page reached
// before), out of the file, or at a page whose header names another. A
// bbolt search on such a file recurses until Go's stack limit, a fatal
// error no recover reaches ("goroutine stack exceeds 1000000000-byte
// limit", found by the hostile-files test: a Validate of a rotated-away
// token revoked its family and deleted through a branch page pointing at
// itself), and a cursor's First or Next loops for ever. It checks every
// branch page, the root bucket's leaves, and the header and first key of
// every other leaf, where pagesSound's walk checks every page whole. Both
// read the tree a level at a time, in page order, in runs of nearby
// pages (pageWalker.walk): at 1M tokens (86,000 pages) that is a read of
// most of the file, about 0.1 s with it in the page cache and close to a
// sequential read cold (0.3-0.7 s), where a read per page in tree order
// took 0.16 s and 3-6 s.
//
// It then checks the freelist page freelist (checkFreelist) against the
// pages the walk reached: a page both free and in the tree is given to
// the next write, which writes over it while the tree still leads there
// (tokens lost, a page reached twice: the hostile-files kind of loop).
func treeSound(bdb *bolt.DB, f *os.File, freelist uint64) error {
	return view(bdb, func(tx *bolt.Tx) error {
		w := walkTree(f, tx, true)
		if len(w.problems) > 0 {
			return fmt.Errorf("%w: %s", ErrCorrupt, w.problems[0])
		}
		if p := checkFreelist(f, w.pageSize, w.hwm, freelist, w.seen); p != "" {
			return fmt.Errorf("%w: bbolt %s", ErrCorrupt, p)
		}
		return nil
	})
}

// pagesSound is run by the committer before it rolls a write transaction
// back: with NoFreelistSync, bbolt's rollback rebuilds the freelist by
// walking the file in its own goroutine, where a damaged page would end
// the process. It walks the committed pages itself first.
func pagesSound(bdb *bolt.DB) error {
	return view(bdb, func(tx *bolt.Tx) error {
		if p := checkPages(bdb.Path(), tx); len(p) > 0 {
			return fmt.Errorf("%w: %s", ErrCorrupt, p[0])
		}
		return nil
	})
}
