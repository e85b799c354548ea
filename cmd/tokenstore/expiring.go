package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

func newExpiringCmd(a *app) *cobra.Command {
	var (
		within time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "expiring [--within D]",
		Short: "List the live tokens that expire within a duration, soonest first (read-only)",
		Long: `List the live tokens whose deadline falls within --within from now,
soonest first, in list's table or (--json) JSON lines: the tokens of scripts
and services to renew before they stop working. A sliding token's deadline
is where its last use left it; each use moves it.

On a file it reads every token once, from a read-only open; with --url the
running application does.`,
		Example: `  tokenstore expiring --within 7d
  tokenstore expiring --within 36h --json | jq -r .subject`,
		Args:        noArgs,
		Annotations: remoteOK,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if within < time.Millisecond {
				return usagef("--within %s: give a positive duration such as 7d or 36h", formatDuration(within))
			}
			return a.expiring(cmd.Context(), within, asJSON)
		},
	}
	within = 7 * 24 * time.Hour
	cmd.Flags().Var((*durationValue)(&within), "within", "how far ahead to look")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per token")
	return cmd
}

func (a *app) expiring(ctx context.Context, within time.Duration, asJSON bool) (err error) {
	st, err := a.openStore(openRead)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	infos, walkErr := st.Expiring(ctx, within)
	if walkErr != nil && !errors.Is(walkErr, tokenstore.ErrCorrupt) {
		return walkErr
	}
	// Damaged records cost only themselves: the others are printed, then
	// the error that names them.
	out := newListWriter(a.stdout, a.now(), asJSON)
	for _, info := range infos {
		if err := out.write(info); err != nil {
			return err
		}
	}
	if err := out.flush(); err != nil {
		return err
	}
	if walkErr != nil {
		return walkErr
	}
	if out.rows == 0 && !asJSON {
		fmt.Fprintf(a.stderr, "no live tokens expire within %s\n", formatDuration(within))
	}
	return nil
}
