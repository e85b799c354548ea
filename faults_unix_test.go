//go:build unix

package tokenstore_test

// Issue 12, kind 4: maintenance treats the file as the operator's file
// (paths, links, modes and owners are Unix's here).

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tokenstore/tokenstore"
)

// TestOpen_NamesTheRealCause: a path that is not a token file is refused
// with the cause and its sentinel, never as a damaged file (the reported
// case: a directory was "ErrCorrupt: invalid database").
func TestOpen_NamesTheRealCause(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	cases := []struct {
		name     string
		path     string
		readOnly bool
		want     error
		text     string
	}{
		{"directory", dir, false, syscall.EISDIR, "is a directory"},
		{"directory read-only", dir, true, syscall.EISDIR, "is a directory"},
		{"fifo", fifo, false, fs.ErrInvalid, "not a regular file"},
		{"fifo read-only", fifo, true, fs.ErrInvalid, "not a regular file"},
		{"missing read-only", filepath.Join(dir, "missing.db"), true, fs.ErrNotExist, "no such file"},
		{"under a file", filepath.Join(fifo, "tokens.db"), false, syscall.ENOTDIR, "not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			within(t, "Open", func() {
				_, err := tokenstore.Open(tc.path, &tokenstore.Options{ReadOnly: tc.readOnly, LockTimeout: 100 * time.Millisecond})
				require.ErrorIs(t, err, tc.want)
				require.NotErrorIs(t, err, tokenstore.ErrCorrupt)
				require.Contains(t, err.Error(), tc.text)
				require.Contains(t, err.Error(), tc.path, "names the path")
			})
		})
	}
	_, _, err := tokenstore.Compact(dir, nil)
	require.ErrorIs(t, err, syscall.EISDIR, "Compact")
	_, _, err = tokenstore.Compact(filepath.Join(dir, "missing.db"), nil)
	require.ErrorIs(t, err, fs.ErrNotExist, "Compact")
}

// fileWithFreePages makes a store at path with 200 tokens issued and 150
// revoked, so that Compact has pages to drop, and returns the live tokens.
func fileWithFreePages(t *testing.T, path string) []string {
	t.Helper()
	db, err := tokenstore.Open(path, &tokenstore.Options{SweepInterval: -1})
	require.NoError(t, err)
	issued := issueMany(t, db, 200, "user", tokenstore.Policy{})
	for _, is := range issued[:150] {
		require.NoError(t, db.RevokeID(t.Context(), is.Info.ID))
	}
	require.NoError(t, db.Close())
	var live []string
	for _, is := range issued[150:] {
		live = append(live, is.Token)
	}
	return live
}

// TestCompact_KeepsTheOperatorsFile: the reported case (compact through a
// symbolic link replaced the link with a new file, so the application's
// file and the link became two stores) and its neighbours: the mode and
// owner of the file are kept.
func TestCompact_KeepsTheOperatorsFile(t *testing.T) {
	ctx := t.Context()
	real := filepath.Join(t.TempDir(), "tokens.db")
	link := filepath.Join(t.TempDir(), "link.db")
	require.NoError(t, os.Symlink(real, link))
	live := fileWithFreePages(t, real)
	require.NoError(t, os.Chmod(real, 0o640))
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 { // root can give the file to someone else: Compact must keep it theirs
		uid, gid = 65534, 65534
		require.NoError(t, os.Chown(real, uid, gid))
	}

	before, after, err := tokenstore.Compact(link, nil)
	require.NoError(t, err)
	require.Less(t, after, before, "compacted")
	lst, err := os.Lstat(link)
	require.NoError(t, err)
	require.Equal(t, fs.ModeSymlink, lst.Mode().Type(), "the link is still a link")
	target, err := os.Readlink(link)
	require.NoError(t, err)
	require.Equal(t, real, target)
	st, err := os.Stat(real)
	require.NoError(t, err)
	require.Equal(t, after, st.Size(), "the real file was rewritten")
	require.Equal(t, fs.FileMode(0o640), st.Mode().Perm(), "mode kept")
	sys := st.Sys().(*syscall.Stat_t)
	require.Equal(t, []int{uid, gid}, []int{int(sys.Uid), int(sys.Gid)}, "owner kept")
	entries, err := os.ReadDir(filepath.Dir(real))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left")

	// One store, whichever name it is opened by.
	db := mustOpenAt(t, link, &tokenstore.Options{SweepInterval: -1})
	require.NoError(t, db.Revoke(ctx, live[0]))
	require.NoError(t, db.Close())
	db = mustOpenAt(t, real, &tokenstore.Options{SweepInterval: -1})
	_, err = db.Validate(ctx, live[0])
	require.ErrorIs(t, err, tokenstore.ErrNotFound, "a revocation through the link is seen by the application")
	_, err = db.Validate(ctx, live[1])
	require.NoError(t, err)
}

// TestCompact_RefusesHardLinks: a file with a second name is left as it
// is: the rename would make the two names two stores, and a revocation
// through one would not be seen through the other.
func TestCompact_RefusesHardLinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "tokens.db")
	live := fileWithFreePages(t, real)
	other := filepath.Join(dir, "other.db")
	require.NoError(t, os.Link(real, other))
	before, err := os.ReadFile(real)
	require.NoError(t, err)

	_, _, err = tokenstore.Compact(real, nil)
	require.ErrorIs(t, err, fs.ErrInvalid)
	require.ErrorContains(t, err, "has 2 hard links")
	after, err := os.ReadFile(other)
	require.NoError(t, err)
	require.Equal(t, before, after, "the file is untouched")
	a, err := os.Stat(real)
	require.NoError(t, err)
	b, err := os.Stat(other)
	require.NoError(t, err)
	require.True(t, os.SameFile(a, b), "still one file")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "no temporary file left")
	db := mustOpenAt(t, other, &tokenstore.Options{SweepInterval: -1})
	_, err = db.Validate(t.Context(), live[0])
	require.NoError(t, err)
	require.NoError(t, db.Close())
}

// TestBackupFile_ThroughSymlink: a backup written to a path that is a
// link replaces the file it points at and keeps the link.
func TestBackupFile_ThroughSymlink(t *testing.T) {
	db := mustOpen(t, &tokenstore.Options{SweepInterval: -1})
	_, _, err := db.Issue(t.Context(), "user")
	require.NoError(t, err)
	real := filepath.Join(t.TempDir(), "backup.db")
	require.NoError(t, os.WriteFile(real, []byte("old backup"), 0o600))
	link := filepath.Join(t.TempDir(), "latest.db")
	require.NoError(t, os.Symlink(real, link))
	n, err := db.BackupFile(t.Context(), link)
	require.NoError(t, err)
	lst, err := os.Lstat(link)
	require.NoError(t, err)
	require.Equal(t, fs.ModeSymlink, lst.Mode().Type(), "the link is still a link")
	require.Equal(t, n, fileSize(t, real), "the backup is in the file the link points at")
}

// TestBackupFile_RefusesWhatIsNotABackup: BackupFile to the store's own
// file (by its path, a link to it or a hard link) returned nil after
// renaming the copy over the live file: the open store went on writing to
// the unlinked old file, and everything after the backup (revocations
// too) was lost at the next Open. A directory was "file exists", and a
// FIFO was replaced by a regular file (its reader waited for ever). Each
// is refused with its cause, and nothing is touched.
func TestBackupFile_RefusesWhatIsNotABackup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.db")
	db := mustOpenAt(t, path, &tokenstore.Options{SweepInterval: -1})
	token, _, err := db.Issue(t.Context(), "user")
	require.NoError(t, err)
	require.NoError(t, os.Symlink(path, filepath.Join(dir, "link.db")))
	require.NoError(t, os.Link(path, filepath.Join(dir, "hard.db")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "adir"), 0o755))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	st, err := os.Stat(path)
	require.NoError(t, err)

	for _, tc := range []struct {
		name, why string
		is        error
	}{
		{"tokens.db", "is the store's own file", fs.ErrInvalid},
		{"link.db", "is the store's own file", fs.ErrInvalid},
		{"hard.db", "is the store's own file", fs.ErrInvalid},
		{"adir", "is a directory", syscall.EISDIR},
		{"adir/", "is a directory", syscall.EISDIR},
		{"fifo", "not a regular file", fs.ErrInvalid},
	} {
		_, err := db.BackupFile(t.Context(), filepath.Join(dir, tc.name))
		require.ErrorIs(t, err, tc.is, tc.name)
		require.ErrorContains(t, err, tc.why, tc.name)
	}
	now, err := os.Stat(path)
	require.NoError(t, err)
	require.True(t, os.SameFile(st, now), "the store's file was replaced")
	lst, err := os.Lstat(filepath.Join(dir, "fifo"))
	require.NoError(t, err)
	require.Equal(t, fs.ModeNamedPipe, lst.Mode().Type(), "the FIFO is still a FIFO")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 5, "no temporary file left beside them")

	// What is written after the refused backups survives a reopen.
	require.NoError(t, db.Revoke(t.Context(), token))
	require.NoError(t, db.Close())
	db2 := mustOpenAt(t, path, &tokenstore.Options{SweepInterval: -1})
	_, err = db2.Lookup(t.Context(), token)
	require.ErrorIs(t, err, tokenstore.ErrNotFound, "the revocation was lost")
}
