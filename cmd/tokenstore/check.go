package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newCheckCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the file: bbolt's consistency check and every record and index (read-only)",
		Long: `Verify the file from a read-only open: bbolt's own consistency check
(pages, freelist), then tokenstore's: every record's checksum, every index
entry points at a record that agrees with it, every record is in each
index, and the stored count is right. Prints "ok" and exits 0, or prints
one problem per line (naming token IDs, never tokens) and exits 1.
It never repairs anything: on problems, restore a backup.`,
		Example: `  tokenstore check --db /var/lib/app/tokens.db`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.checkFile(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"ok": bool, "tokens": N, "problems": [...]}`)
	return cmd
}

func (a *app) checkFile(ctx context.Context, asJSON bool) (err error) {
	db, err := a.open(openRead)
	if err != nil {
		return err
	}
	defer closeDB(db, &err)
	problems, err := db.Check(ctx)
	if err != nil {
		return err
	}
	tokens := db.Stats().Tokens
	if asJSON {
		if problems == nil {
			problems = []string{}
		}
		err = writeJSON(a.stdout, struct {
			File     string   `json:"file"`
			OK       bool     `json:"ok"`
			Tokens   int64    `json:"tokens"`
			Problems []string `json:"problems"`
		}{a.dbPath, len(problems) == 0, tokens, problems})
	} else if len(problems) == 0 {
		_, err = fmt.Fprintf(a.stdout, "ok: %s passed bbolt's and tokenstore's checks (%s)\n", a.dbPath, count(int(tokens), "token"))
	} else {
		for _, p := range problems {
			if _, err = fmt.Fprintln(a.stdout, p); err != nil {
				break
			}
		}
	}
	if err != nil || len(problems) == 0 {
		return err
	}
	return &shownError{fmt.Errorf("%s: %s found; check never repairs: restore a backup", a.dbPath, count(len(problems), "problem"))}
}
