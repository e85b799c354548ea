package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

func newRotateCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rotate [TOKEN|-]",
		Short: "Replace a token with a new one: same subject, policy and metadata",
		Long: `Replace a token: a new token with the old one's subject, policy and
metadata is issued and the old one revoked, in one durable transaction, so
that afterwards exactly one of the two works. The new token's lifetime
starts now. As with issue, only the new token goes to stdout, so that
T=$(tokenstore rotate ...) captures it; its ID and expiry go to stderr.

The old token is given as an argument, or on stdin with "-" or no argument
(without echo on a terminal). An expired token cannot be rotated: issue a
new one.`,
		Example: `  NEW=$(printf '%s\n' "$OLD" | tokenstore rotate -)
  printf '%s\n' "$OLD" | tokenstore rotate --json | jq -r .token`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			token, err := a.readToken(args)
			if err != nil {
				return err
			}
			if _, err := uuid.Parse(token); err == nil {
				return usagef("that is a token ID, not a token: rotate needs the token itself")
			}
			return a.rotate(cmd.Context(), token, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print the new token and its details, and the ID it replaces ("replaces"), as one JSON object`)
	return cmd
}

// rotatedJSON is rotate's --json output: the new token, the ID of the
// token it replaces, and the new token's Info.
type rotatedJSON struct {
	Token    string `json:"token"`
	Replaces string `json:"replaces"`
	infoJSON
}

func (a *app) rotate(ctx context.Context, token string, asJSON bool) (err error) {
	db, err := a.open(openWrite)
	if err != nil {
		return err
	}
	defer closeDB(db, &err)
	// The file is this process's alone (bbolt's lock), so the token looked
	// up is the one Rotate replaces.
	old, err := db.Lookup(ctx, token)
	if err != nil {
		return a.rotateError(err, token)
	}
	newToken, info, err := db.Rotate(ctx, token)
	if err != nil {
		return a.rotateError(err, token)
	}
	if asJSON {
		err = writeJSON(a.stdout, rotatedJSON{Token: newToken, Replaces: old.ID.String(), infoJSON: newInfoJSON(info, a.now())})
	} else {
		_, err = fmt.Fprintln(a.stdout, newToken)
	}
	if err != nil {
		return fmt.Errorf("token %s replaced token %s, which no longer works, but could not be written out (revoke it: tokenstore revoke --id %s, and issue another): %w", info.ID, old.ID, info.ID, err)
	}
	fmt.Fprintf(a.stderr, "rotated token %s: new token %s to %q, %s, expires %s (%s)\n",
		old.ID, info.ID, info.Subject, formatPolicy(info.Policy), formatTime(info.ExpiresAt), formatAgo(a.now(), info.ExpiresAt))
	return nil
}

func (a *app) rotateError(err error, token string) error {
	if errors.Is(err, tokenstore.ErrExpired) {
		return &explained{"invalid token: expired; an expired token cannot be rotated: issue a new one", err}
	}
	return a.tokenError(err, token)
}
