package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tokenstore/tokenstore"
	"golang.org/x/term"
)

func newBackupCmd(a *app) *cobra.Command {
	var asJSON, force bool
	cmd := &cobra.Command{
		Use:   "backup OUT|DIR|- [--force]",
		Short: "Write a consistent copy of the file to OUT, into DIR, or to stdout with - (read-only)",
		Long: `Write a consistent copy of the file (one bbolt read transaction) to OUT,
through a temporary file in OUT's directory that is fsync'd and then put in
place, so OUT never holds half a backup. When OUT is a directory the copy
goes into it under the token file's name. When OUT is a symbolic link, the
file it points at is replaced and the link kept. An existing file is never
replaced unless --force is given. With "-" the copy goes to stdout and the
summary to stderr. The copy holds token hashes, never tokens; it is
created with mode 0600.

This command opens the file read-only, so it runs while no process has it
open for writing. To back up a running application's file, call
DB.BackupFile from the application.`,
		Example: `  tokenstore backup tokens-$(date +%F).db
  tokenstore backup /var/backups/tokenstore/
  tokenstore backup - | gzip > tokens.db.gz`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "-" && asJSON {
				return usagef("--json needs stdout: back up to a file, not to -")
			}
			if f, ok := a.stdout.(*os.File); ok && args[0] == "-" && term.IsTerminal(int(f.Fd())) {
				return usagef("stdout is a terminal: redirect the backup to a file or a pipe")
			}
			return a.backup(cmd.Context(), args[0], force, asJSON)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace OUT if it exists")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"file": OUT, "bytes": N}`)
	return cmd
}

func (a *app) backup(ctx context.Context, out string, force, asJSON bool) (err error) {
	if out != "-" {
		if err := a.mustExist(openRead); err != nil {
			return err
		}
		if out, err = a.backupPath(out, force); err != nil {
			return err
		}
	}
	db, err := a.open(openRead)
	if err != nil {
		return err
	}
	defer closeDB(db, &err)
	if out == "-" {
		n, err := db.Backup(ctx, a.stdout)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "backed up %s to stdout (%s)\n", a.dbPath, formatBytes(n))
		return nil
	}
	n, err := writeBackup(ctx, db, out, force)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.stdout, struct {
			File  string `json:"file"`
			Bytes int64  `json:"bytes"`
		}{out, n})
	}
	_, err = fmt.Fprintf(a.stdout, "backed up %s to %s (%s)\n", a.dbPath, out, formatBytes(n))
	return err
}

// backupPath returns the file a backup to out writes: out, or the token
// file's name inside out when out is a directory. It refuses an existing
// file without force, and the token file itself.
func (a *app) backupPath(out string, force bool) (string, error) {
	if lst, err := os.Lstat(out); err == nil && lst.Mode().Type() == fs.ModeSymlink {
		// The operator's link (a "latest" link, a link into a mounted
		// volume) stays; the file it points at is what gets replaced, as
		// DB.BackupFile and compact do.
		real, err := filepath.EvalSymlinks(out)
		if err != nil {
			target, _ := os.Readlink(out)
			return "", &explained{fmt.Sprintf("cannot back up to %s: it is a symbolic link to %s, which does not exist (name the file itself, or remove the link)", out, target), err}
		}
		out = real
	}
	st, err := os.Stat(out)
	switch {
	case err == nil && st.IsDir():
		out = filepath.Join(out, filepath.Base(a.dbPath))
		st, err = os.Stat(out)
	case errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(out, string(filepath.Separator)):
		return "", &explained{fmt.Sprintf("cannot back up to %s: no such directory (create it first, or name a file)", out), err}
	case errors.Is(err, fs.ErrNotExist):
		if _, derr := os.Stat(filepath.Dir(out)); errors.Is(derr, fs.ErrNotExist) {
			return "", &explained{fmt.Sprintf("cannot back up to %s: directory %s does not exist", out, filepath.Dir(out)), derr}
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return out, nil
		}
		return "", err
	}
	if src, serr := os.Stat(a.dbPath); serr == nil && os.SameFile(src, st) {
		return "", usagef("backup %s: that is the token file itself", out)
	}
	if st.IsDir() {
		return "", &explained{fmt.Sprintf("cannot back up to %s: it is a directory", out), fs.ErrExist}
	}
	if !st.Mode().IsRegular() {
		// A FIFO's reader would wait for ever; a device (as root:
		// /dev/null) would be replaced by a regular file.
		return "", &explained{fmt.Sprintf("cannot back up to %s: not a regular file (%s); to stream the backup, give - and redirect stdout", out, st.Mode().Type()), fs.ErrInvalid}
	}
	if !force {
		return "", existsError(out)
	}
	return out, nil
}

func existsError(path string) error {
	return &explained{fmt.Sprintf("%s already exists: not replaced (give --force to replace it, or name another file)", path), fs.ErrExist}
}

// writeBackup writes db's copy to path through a temporary file in path's
// directory, fsync'd, then linked to path, which fails if path exists, or
// (force) renamed over it; the directory is fsync'd so that the name
// survives a crash. Between backupPath's check and the link another
// process may create path: the link refuses it then, so nothing is ever
// replaced without force.
func writeBackup(ctx context.Context, db *tokenstore.DB, path string, force bool) (int64, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if errors.Is(err, fs.ErrPermission) {
		return 0, &explained{fmt.Sprintf("cannot write the backup in %s: permission denied (the directory is not writable by this user)", dir), err}
	} else if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // after the link or rename: the copy stays under path
	n, err := db.Backup(ctx, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if force {
		err = os.Rename(tmp.Name(), path)
	} else if err = os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return 0, existsError(path)
	} else if err != nil {
		// A filesystem without hard links: rename, if path is still free.
		if _, serr := os.Lstat(path); !errors.Is(serr, fs.ErrNotExist) {
			return 0, existsError(path)
		}
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return 0, err
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, fmt.Errorf("backup written to %s, but its directory could not be synced: %w", path, err)
		}
	}
	return n, nil
}
