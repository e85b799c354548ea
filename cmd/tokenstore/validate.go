package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

func newValidateCmd(a *app) *cobra.Command {
	var (
		asJSON bool
		scopes []string
	)
	cmd := &cobra.Command{
		Use:   "validate [-] [--scope S]...",
		Short: "Check a token as the application would, counting it as a use",
		Long: `Check a token as the application's Validate does: exit 0 and print its
details when it is valid; exit 1 with the reason (malformed, not found,
expired) otherwise. It counts as a use: a sliding token's expiry moves.

With --scope, a valid token must also have every scope given (exact,
case-sensitive), as an application's RequireScopes checks: otherwise exit 1
with "insufficient scope" and the scopes missing.

The token is read from stdin ("-" or no argument; without echo on a
terminal), never from an argument: that keeps it out of shell history
and ps.`,
		Example: `  printf '%s\n' "$T" | tokenstore validate -
  printf '%s\n' "$T" | tokenstore validate --scope orders:write`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkScopes(scopes); err != nil {
				return err
			}
			token, err := a.readToken(args)
			if err != nil {
				return err
			}
			return a.checkToken(cmd.Context(), token, true, asJSON, scopes)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the token's details as JSON")
	cmd.Flags().StringArrayVar(&scopes, "scope", nil, "require this `scope` of the token (repeatable)")
	return cmd
}

func newInspectCmd(a *app) *cobra.Command {
	var (
		asJSON bool
		id     string
	)
	cmd := &cobra.Command{
		Use:   "inspect [-] | --id UUID",
		Short: "Show a token's details without counting a use (read-only)",
		Long: `Show a token's details as validate does, without counting a use, from a
read-only open of the file. Exit 1 with the reason when the token is not
valid. With --id, look the token up by its non-secret ID instead: no token
needed. With --url, the running application looks it up.

A token rotated away and presented after its grace is reuse (exit 1,
"reused"): on a file, opened read-only, nothing changes; with --url the
application revokes the token's whole family, as it does when the token
reaches it. inspect --id never counts as a presentation.

The token is read from stdin ("-" or no argument), never from an argument.`,
		Example: `  printf '%s\n' "$T" | tokenstore inspect
  tokenstore inspect --id 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d --json`,
		Args:        maxArgs(1),
		Annotations: remoteOK,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("id") {
				if len(args) > 0 {
					return usagef("give a token or --id, not both")
				}
				u, err := parseID(id)
				if err != nil {
					return err
				}
				return a.inspectID(cmd.Context(), u, asJSON)
			}
			token, err := a.readToken(args)
			if err != nil {
				return err
			}
			return a.checkToken(cmd.Context(), token, false, asJSON, nil)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the token's details as JSON")
	cmd.Flags().StringVar(&id, "id", "", "the token's ID, as list shows it")
	return cmd
}

// checkToken validates (use) or looks up token, checks that it has the
// scopes, and prints its Info.
func (a *app) checkToken(ctx context.Context, token string, use, asJSON bool, scopes []string) (err error) {
	mode := openRead
	if use {
		mode = openWrite
	}
	st, err := a.openStore(mode)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	lookup := st.Lookup
	if use {
		lookup = st.(fileStore).Validate // validate refuses --url
	}
	info, err := lookup(ctx, token)
	if err != nil {
		return a.tokenError(err, token)
	}
	if !info.HasScopes(scopes...) {
		var missing []string
		for _, s := range scopes {
			if !info.HasScopes(s) {
				missing = append(missing, s)
			}
		}
		has := "none"
		if s := info.Scopes(); s != nil {
			has = strings.Join(s, " ")
		}
		return &explained{fmt.Sprintf("insufficient scope: the token lacks %s (it has: %s)", strings.Join(missing, " "), has), tokenstore.ErrInsufficientScope}
	}
	return a.printInfo(info, asJSON)
}

func (a *app) inspectID(ctx context.Context, id uuid.UUID, asJSON bool) (err error) {
	db, err := a.openStore(openRead)
	if err != nil {
		return err
	}
	defer closeStore(db, &err)
	info, err := db.Get(ctx, id)
	switch {
	case errors.Is(err, tokenstore.ErrExpired):
		// Get returns an expired token's details too: show them, then fail.
		if perr := a.printInfo(info, asJSON); perr != nil {
			return perr
		}
		err = &explained{"token " + id.String() + " has expired (not swept yet)", err}
		if asJSON { // the details on stdout say "expired": true
			return &shownError{err}
		}
		return err
	case errors.Is(err, tokenstore.ErrNotFound):
		return &explained{"no token with ID " + id.String() + " (never issued, revoked, or expired and swept)", err}
	case err != nil:
		return err
	}
	return a.printInfo(info, asJSON)
}

func (a *app) printInfo(info tokenstore.Info, asJSON bool) error {
	if asJSON {
		return writeJSON(a.stdout, newInfoJSON(info, a.now()))
	}
	return printInfo(a.stdout, info, a.now())
}
