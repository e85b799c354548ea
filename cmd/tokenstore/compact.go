package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

func newCompactCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "compact",
		Short: "Rewrite the file without its free pages, replacing it atomically",
		Long: `Rewrite the file without its free pages and atomically replace it: a
bbolt file never shrinks by itself, so after a mass expiry or revocation it
keeps its size until compacted. Prints the size before and after.

It holds the file's write lock throughout: stop the application first. It
needs free disk space for a second copy of the live data.`,
		Example: `  tokenstore sweep && tokenstore compact`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.compact(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"file": F, "before": N, "after": N} (bytes)`)
	return cmd
}

func (a *app) compact(ctx context.Context, asJSON bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := a.mustExist(openWrite); err != nil {
		return err
	}
	before, after, err := tokenstore.Compact(a.dbPath, a.options(false))
	if errors.Is(err, fs.ErrPermission) && writable(a.dbPath) {
		// The file opened for writing: what failed is the new copy, which
		// compact writes beside it.
		dir, beside := filepath.Dir(a.dbPath), ","
		if real, rerr := filepath.EvalSymlinks(a.dbPath); rerr == nil && real != filepath.Clean(a.dbPath) {
			// Compact rewrites the file the link points at, beside it.
			dir, beside = filepath.Dir(real), ", beside the file the link points at,"
		}
		return &explained{fmt.Sprintf("cannot compact %s: permission denied: compact writes its new copy in %s%s and this user may not create files there", a.dbPath, dir, beside), err}
	}
	if err != nil {
		return a.openError(err, false)
	}
	if asJSON {
		return writeJSON(a.stdout, struct {
			File   string `json:"file"`
			Before int64  `json:"before"`
			After  int64  `json:"after"`
		}{a.dbPath, before, after})
	}
	_, err = fmt.Fprintf(a.stdout, "compacted %s: %s → %s (%s freed)\n", a.dbPath, formatBytes(before), formatBytes(after), formatBytes(before-after))
	return err
}

// writable reports whether this user may open path for writing.
func writable(path string) bool {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}
