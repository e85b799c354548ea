package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newBackupCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backup OUT|-",
		Short: "Write a consistent copy of the file to OUT, or to stdout with - (read-only)",
		Long: `Write a consistent copy of the file (one bbolt read transaction) to OUT,
through a temporary file in OUT's directory that is fsync'd and then
renamed, so OUT never holds half a backup. With "-" the copy goes to
stdout and the summary to stderr. The copy holds token hashes, never
tokens; it is created with mode 0600.

This command opens the file read-only, so it runs while no process has it
open for writing. To back up a running application's file, call
DB.BackupFile from the application.`,
		Example: `  tokenstore backup tokens-$(date +%F).db
  tokenstore backup - | gzip > tokens.db.gz`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "-" && asJSON {
				return usagef("--json needs stdout: back up to a file, not to -")
			}
			if f, ok := a.stdout.(*os.File); ok && args[0] == "-" && term.IsTerminal(int(f.Fd())) {
				return usagef("stdout is a terminal: redirect the backup to a file or a pipe")
			}
			return a.backup(cmd.Context(), args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"file": OUT, "bytes": N}`)
	return cmd
}

func (a *app) backup(ctx context.Context, out string, asJSON bool) (err error) {
	if out != "-" {
		if err := a.mustExist(openRead); err != nil {
			return err
		}
		src, err1 := os.Stat(a.dbPath)
		dst, err2 := os.Stat(out)
		if err1 == nil && err2 == nil && os.SameFile(src, dst) {
			return usagef("backup %s: that is the token file itself", out)
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
	n, err := db.BackupFile(ctx, out)
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
