package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

func newSweepCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sweep",
		Short: "Delete expired tokens now",
		Long: `Delete every expired token now, as the application's background sweeper
does every minute, and print how many and how long it took. Its cost
follows the expired tokens, not the file. The file does not shrink: the
freed pages are reused, and compact returns them to the filesystem.`,
		Example: `  tokenstore sweep`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.sweep(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"swept": N, "seconds": S}`)
	return cmd
}

func (a *app) sweep(ctx context.Context, asJSON bool) (err error) {
	db, err := a.open(openWrite)
	if err != nil {
		return err
	}
	defer closeDB(db, &err)
	start := time.Now()
	n, err := db.Sweep(ctx)
	took := time.Since(start)
	switch {
	case errors.Is(err, tokenstore.ErrCorrupt):
		// The sweep stepped over the damaged records only.
		return fmt.Errorf("%w (%s deleted; tokenstore revoke --id ID removes a damaged one)", err, count(n, "other expired token"))
	case err != nil:
		return fmt.Errorf("%w (%s deleted before it stopped)", err, count(n, "expired token"))
	}
	if asJSON {
		return writeJSON(a.stdout, struct {
			Swept   int     `json:"swept"`
			Seconds float64 `json:"seconds"`
		}{n, took.Seconds()})
	}
	_, err = fmt.Fprintf(a.stdout, "swept %s in %s\n", count(n, "expired token"), took.Round(time.Microsecond))
	return err
}
