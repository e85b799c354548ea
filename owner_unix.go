//go:build unix

package tokenstore

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// keepOwner gives the file at path the owner and group of was, so that a
// file that replaces another (Compact) stays the operator's: the
// application's user must still open it.
func keepOwner(path string, was fs.FileInfo) error {
	old, ok := was.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if now, ok := st.Sys().(*syscall.Stat_t); ok && now.Uid == old.Uid && now.Gid == old.Gid {
		return nil
	}
	if err := os.Chown(path, int(old.Uid), int(old.Gid)); err != nil {
		return fmt.Errorf("keeping the file's owner %d:%d (run as that user, or root): %w", old.Uid, old.Gid, err)
	}
	return nil
}

// hardLinks is how many names the file has (1 where the system does not
// say).
func hardLinks(st fs.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Nlink)
	}
	return 1
}
