package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

func newRotateCmd(a *app) *cobra.Command {
	var (
		asJSON, newFamily bool
		grace             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rotate [-] [--grace D] [--new-family]",
		Short: "Replace a token with its successor: same subject, policy, metadata and family",
		Long: `Replace a token: its successor, with the old one's subject, policy,
metadata and family, is issued and the old one retired, in one durable
transaction. As with issue, only the new token goes to stdout, so that
T=$(tokenstore rotate ...) captures it; its ID, family and expiry go to
stderr.

A family is the chain of tokens rotated from one first token; its ID is
that token's ID. Rotation never extends the family's cap: the successor
expires at the latest when the first token's policy would have ended it
(an absolute token's successor expires when the first token does; a
sliding one's idle window restarts, up to its max). --new-family starts a
new family whose cap counts from now: use it only for a holder who has
authenticated again. A reuse of the old token then revokes the old family,
not the new one.

The old token stays behind as a tombstone until its own deadline. Presented
again after the rotation (or after --grace), it counts as reuse: one of
two parties holds a stolen copy, so the store revokes every token of the
family and the command fails with "reused" (exit 1). With --grace D (at
most 10m) the old token keeps working for D, or until the successor is
first used, and rotating it again within that time prints the same
successor, never a second one: for a client that lost the answer.

The old token is read from stdin ("-" or no argument; without echo on a
terminal), never from an argument, which ps shows to every user. An expired token cannot be rotated: issue a
new one.`,
		Example: `  NEW=$(printf '%s\n' "$OLD" | tokenstore rotate -)
  printf '%s\n' "$OLD" | tokenstore rotate --grace 30s --json | jq -r .token`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := []tokenstore.RotateOption{tokenstore.WithGrace(grace)}
			if newFamily {
				opts = append(opts, tokenstore.WithNewFamily())
			}
			if _, err := tokenstore.NewRotateParams(opts...); err != nil {
				return &usageError{&explained{fmt.Sprintf("--grace %s: a grace is at most %s (a longer one would let a stolen old token work beside the new one); 0 gives none", formatDuration(grace), formatDuration(tokenstore.MaxGrace)), err}}
			}
			token, err := a.readToken(args)
			if err != nil {
				return err
			}
			if _, err := uuid.Parse(token); err == nil {
				return usagef("that is a token ID, not a token: rotate needs the token itself")
			}
			return a.rotate(cmd.Context(), token, asJSON, opts)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print the new token and its details (family_id included), and the ID it replaces ("replaces"), as one JSON object`)
	cmd.Flags().Var((*durationValue)(&grace), "grace", "keep the old token working for this `duration` (at most 10m), or until the new one is first used")
	cmd.Flags().BoolVar(&newFamily, "new-family", false, "start a new family with the new token: its cap counts from now (only for a holder who authenticated again)")
	return cmd
}

// rotatedJSON is rotate's --json output: the new token, the ID of the
// token it replaces, and the new token's Info.
type rotatedJSON struct {
	Token    string `json:"token"`
	Replaces string `json:"replaces"`
	infoJSON
}

func (a *app) rotate(ctx context.Context, token string, asJSON bool, opts []tokenstore.RotateOption) (err error) {
	db, err := a.open(openWrite)
	if err != nil {
		return err
	}
	defer closeDB(db, &err)
	// The file is this process's alone (bbolt's lock), so the token looked
	// up is the one Rotate replaces. Lookup answers as Rotate would for a
	// token it refuses (reuse included), so the reason comes from there.
	old, err := db.Lookup(ctx, token)
	if err != nil {
		return a.rotateError(err, token)
	}
	newToken, info, err := db.Rotate(ctx, token, opts...)
	if err != nil {
		return a.rotateError(err, token)
	}
	if asJSON {
		err = writeJSON(a.stdout, rotatedJSON{Token: newToken, Replaces: old.ID.String(), infoJSON: newInfoJSON(info, a.now())})
	} else {
		_, err = fmt.Fprintln(a.stdout, newToken)
	}
	if err != nil {
		return fmt.Errorf("token %s replaced token %s, but could not be written out (revoke the family: tokenstore revoke --family %s, and issue another): %w", info.ID, old.ID, info.FamilyID, err)
	}
	fmt.Fprintf(a.stderr, "rotated token %s: new token %s to %q in family %s, %s, expires %s (%s)\n",
		old.ID, info.ID, info.Subject, info.FamilyID, formatPolicy(info.Policy), formatTime(info.ExpiresAt), formatAgo(a.now(), info.ExpiresAt))
	return nil
}

func (a *app) rotateError(err error, token string) error {
	if errors.Is(err, tokenstore.ErrExpired) {
		return &explained{"invalid token: expired; an expired token cannot be rotated: issue a new one", err}
	}
	return a.tokenError(err, token)
}
