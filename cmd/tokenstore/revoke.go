package main

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

func newRevokeCmd(a *app) *cobra.Command {
	var (
		id, subject, family string
		asJSON, missingOK   bool
	)
	cmd := &cobra.Command{
		Use:   "revoke [-] | --id UUID | --subject S | --family UUID",
		Short: "Revoke a token, the token with an ID, every token of a subject, or of a family",
		Long: `Revoke one token (read from stdin, "-" or no argument: never from an
argument, which ps shows to every user), the token with a given ID (no token needed: take the ID from
list), every token of a subject ("log out everywhere"), or every token of
a family (--family, the family ID that list and inspect show: one login's
chain of rotated tokens, "log out this session"). Revocation is durable
and immediate. Prints how many tokens were revoked. A token or ID that is
not there is an error (exit 1) unless --missing-ok is given, which makes
"ensure it is revoked" scripts idempotent; a subject or family without
tokens is not an error (a rotated-away token of a revoked family, presented
later, is still refused as reused). A malformed token is always an error.

With --url (or $TOKENSTORE_URL) the running application revokes it through
its admin API: its middleware refuses the token on the next request, with
no restart.`,
		Example: `  printf '%s\n' "$T" | tokenstore revoke -
  tokenstore revoke --id 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d
  tokenstore revoke --missing-ok --id 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d
  tokenstore revoke --subject alice
  tokenstore revoke --family 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d
  tokenstore --url http://127.0.0.1:8080/admin --credential-file ~/.tokenstore-admin revoke --id 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d`,
		Args:        maxArgs(1),
		Annotations: remoteOK,
		RunE: func(cmd *cobra.Command, args []string) error {
			changed := cmd.Flags().Changed
			given := len(args)
			if changed("id") {
				given++
			}
			if changed("subject") {
				given++
			}
			if changed("family") {
				given++
			}
			if given > 1 {
				return usagef("give one of a token on stdin (-), --id, --subject or --family")
			}
			ctx := cmd.Context()
			switch {
			case changed("id"):
				u, err := parseID(id)
				if err != nil {
					return err
				}
				return a.revoke(asJSON, func(db store) (int, error) {
					err := db.RevokeID(ctx, u)
					switch {
					case errors.Is(err, tokenstore.ErrNotFound) && missingOK:
						return 0, nil
					case errors.Is(err, tokenstore.ErrNotFound):
						return 0, &explained{"no token with ID " + u.String() + " (never issued, already revoked, or expired and swept; --missing-ok accepts that)", err}
					case err != nil:
						return 0, err
					}
					return 1, nil
				})
			case changed("family"):
				u, err := parseFamily(family)
				if err != nil {
					return err
				}
				return a.revoke(asJSON, func(db store) (int, error) {
					// A token's own ID (list's ID column, beside FAMILY)
					// names no family unless the token is its family's
					// first: RevokeFamily would revoke 0 and the token
					// would live on, so say which family it is in.
					if info, err := db.Get(ctx, u); (err == nil || errors.Is(err, tokenstore.ErrExpired)) && info.FamilyID != u && info.FamilyID != uuid.Nil {
						return 0, usagef("%s is the ID of a token of family %s, not a family ID: revoke --family %s revokes that family, revoke --id %s this token alone", u, info.FamilyID, info.FamilyID, u)
					}
					return db.RevokeFamily(ctx, u)
				})
			case changed("subject"):
				if err := checkSubject(subject); err != nil {
					return err
				}
				return a.revoke(asJSON, func(db store) (int, error) {
					n, err := db.RevokeSubject(ctx, subject)
					if errors.Is(err, tokenstore.ErrCorrupt) {
						// Every other token of the subject is revoked.
						return n, fmt.Errorf("%w (%s revoked; revoke --id ID removes a damaged one)", err, count(n, "other token"))
					}
					return n, err
				})
			}
			token, err := a.readToken(args)
			if err != nil {
				return err
			}
			if _, err := uuid.Parse(token); err == nil {
				return usagef("that is a token ID, not a token: use revoke --id")
			}
			return a.revoke(asJSON, func(db store) (int, error) {
				err := db.Revoke(ctx, token)
				switch {
				case errors.Is(err, tokenstore.ErrNotFound) && missingOK:
					return 0, nil
				case errors.Is(err, tokenstore.ErrNotFound):
					return 0, &explained{"invalid token: not found (never issued, already revoked, or expired and swept; --missing-ok accepts that)", err}
				case err != nil:
					return 0, a.tokenError(err, token)
				}
				return 1, nil
			})
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "revoke the token with this ID")
	cmd.Flags().StringVar(&subject, "subject", "", "revoke every token of this subject")
	cmd.Flags().StringVar(&family, "family", "", "revoke every token of the family with this `ID` (as list and inspect show it)")
	cmd.Flags().BoolVar(&missingOK, "missing-ok", false, "a token or ID that is not there (already revoked, swept, never issued) revokes 0 tokens and exits 0")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"revoked": N}`)
	return cmd
}

func (a *app) revoke(asJSON bool, do func(store) (int, error)) (err error) {
	db, err := a.openStore(openWrite)
	if err != nil {
		return err
	}
	defer closeStore(db, &err)
	n, err := do(db)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.stdout, struct {
			Revoked int `json:"revoked"`
		}{n})
	}
	_, err = fmt.Fprintf(a.stdout, "revoked %s\n", count(n, "token"))
	return err
}
