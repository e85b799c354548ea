package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tokenstore/tokenstore"
)

// openMode says how a command opens the file.
type openMode int

const (
	openRead   openMode = iota // read-only, shared lock; the file must exist
	openWrite                  // read-write; the file must exist
	openCreate                 // read-write, created when missing
)

// options are the store options every command uses: no background work,
// every use written at once, no cache (one command, few tokens).
func (a *app) options(readOnly bool) *tokenstore.Options {
	return &tokenstore.Options{
		ReadOnly:      readOnly,
		LockTimeout:   a.timeout,
		Prefix:        a.prefix,
		Now:           a.now,
		SweepInterval: -1,
		TouchInterval: -1,
		CacheSize:     -1,
	}
}

// open opens the token file. A missing file is an error unless mode is
// openCreate, so that a mistyped --db never leaves an empty file behind.
func (a *app) open(mode openMode) (*tokenstore.DB, error) {
	if err := a.mustExist(mode); err != nil {
		return nil, err
	}
	db, err := tokenstore.Open(a.dbPath, a.options(mode == openRead))
	if err != nil {
		return nil, a.openError(err, mode == openRead)
	}
	a.prefix = db.Prefix() // the file's: what tokenError's hint names
	a.readOnly = mode == openRead
	return db, nil
}

func (a *app) mustExist(mode openMode) error {
	if mode == openCreate {
		return nil
	}
	st, err := os.Stat(a.dbPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &explained{fmt.Sprintf("%s does not exist (name the token file with --db)", a.dbPath), err}
	case err == nil && st.Mode().IsRegular() && st.Size() == 0 && mode == openRead:
		// (Not a FIFO or a device, whose size is 0 too: Open names those.)
		// bbolt would try to initialise it through a read-only descriptor.
		return fmt.Errorf("%s is empty: not a tokenstore file yet", a.dbPath)
	}
	return nil
}

// openError explains the errors of Open that an operator meets.
func (a *app) openError(err error, readOnly bool) error {
	var mismatch *tokenstore.PrefixMismatchError
	switch {
	case errors.Is(err, tokenstore.ErrLocked):
		var b strings.Builder
		fmt.Fprintf(&b, "%s is held by another process, probably the application that uses it (waited %s).\n", a.dbPath, formatDuration(a.timeout))
		b.WriteString("bbolt lets one process at a time open a file for writing, and it keeps the file locked until it closes it.\n")
		b.WriteString("Stop the application and run this again, or, if it mounts the admin handler, run list, inspect, revoke, issue, stats or expiring through it with --url URL")
		if readOnly {
			b.WriteString(";\nread-only commands (inspect, list, stats, check, backup) run beside each other, not beside a writer")
		}
		b.WriteString(". If it is about to exit, a longer --timeout waits for it.")
		return &explained{b.String(), err}
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return &explained{a.permissionText(err, readOnly), err}
	case errors.As(err, &mismatch):
		// The library speaks to a program (Options.Prefix); the operator
		// gave --prefix.
		return &explained{fmt.Sprintf("%s records the token prefix %q: --prefix %s does not match it (leave --prefix out to use the file's)", a.dbPath, mismatch.Recorded, a.prefix), err}
	case errors.Is(err, tokenstore.ErrCorrupt):
		// Keep only what follows the sentinel's text: the reason.
		_, why, _ := strings.Cut(err.Error(), strings.TrimPrefix(tokenstore.ErrCorrupt.Error(), "tokenstore: "))
		return &explained{fmt.Sprintf("%s is damaged or not a tokenstore file%s", a.dbPath, why), err}
	}
	return err
}

// permissionText names what the operator may not do: create the file in
// its directory, read it, or write it.
func (a *app) permissionText(err error, readOnly bool) string {
	why := "permission denied"
	if errors.Is(err, syscall.EROFS) {
		why = "read-only filesystem"
	}
	if _, serr := os.Stat(a.dbPath); errors.Is(serr, fs.ErrNotExist) {
		dir := filepath.Dir(a.dbPath)
		return fmt.Sprintf("cannot create %s: %s: this user may not create files in %s (give --db a file in a writable directory)", a.dbPath, why, dir)
	}
	if readOnly {
		return fmt.Sprintf("cannot read %s: %s: run this as a user that may read it, such as the application's", a.dbPath, why)
	}
	if f, rerr := os.Open(a.dbPath); rerr == nil {
		_ = f.Close()
		return fmt.Sprintf("cannot open %s for writing: %s; inspect, list, stats, check and backup only need to read it", a.dbPath, why)
	}
	return fmt.Sprintf("cannot open %s: %s: this user may neither read nor write it; run this as the application's user", a.dbPath, why)
}

// closeDB closes db, reporting its error into *err unless one is there.
func closeDB(db *tokenstore.DB, err *error) {
	if cerr := db.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}
