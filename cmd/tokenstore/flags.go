package main

import (
	"fmt"
	"regexp"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/tokenshape"
)

// noArgs and maxArgs are cobra.PositionalArgs that fail as usage errors.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %d", cmd.Name(), len(args))
	}
	return nil
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("%s takes at most %d argument(s), got %d", cmd.Name(), n, len(args))
		}
		return nil
	}
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d", cmd.Name(), n, len(args))
		}
		return nil
	}
}

// checkSubject refuses a --subject the library would refuse, saying what
// it accepts.
func checkSubject(s string) error {
	if err := tokenstore.ValidateSubject(s); err != nil {
		return &usageError{&explained{fmt.Sprintf("%v (--subject takes 1 to %d bytes of UTF-8 without control characters, such as a user ID)", err, tokenstore.MaxSubjectLen), err}}
	}
	if tokenshape.IsToken(s) {
		// Never echoed, looked up or stored as a subject (where list and
		// logs would show it), as the admin API and admin.Client refuse it.
		return &usageError{&explained{"--subject was given a token, not a subject: inspect or revoke a token by the token itself, on stdin (-), which keeps it out of argv", tokenstore.ErrInvalidSubject}}
	}
	return nil
}

// tokenShaped matches what may be a token, or most of one: a prefix and
// its underscore followed by a long run of base62 (a token's body is 49
// characters), or such a run alone (a token pasted without its prefix).
// A mistyped or truncated token is as secret as a whole one.
var tokenShaped = regexp.MustCompile(`(?:[a-z][a-z0-9]*_)?[0-9A-Za-z]{32,}`)

// redactTokens replaces whatever may be a token in s, so that an error
// repeating the operator's input (an unknown command, a flag's value)
// never prints one: stderr is kept by terminals, CI logs and collectors.
func redactTokens(s string) string {
	return tokenShaped.ReplaceAllString(s, "[token hidden]")
}

// parseID parses an --id value. A token pasted where its ID belongs is
// refused without repeating it.
func parseID(s string) (uuid.UUID, error) {
	u, err := uuid.Parse(s)
	if err == nil {
		return u, nil
	}
	const want = "--id takes a token ID, a UUID as list shows it (such as 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d)"
	if tokenShaped.MatchString(s) {
		return uuid.Nil, usagef("%s, and that looks like a token, not its ID: give the token itself on stdin (-)", want)
	}
	return uuid.Nil, usagef("%s; %q is not one", want, s)
}

// parseFamily parses a --family value, as parseID does an --id value.
func parseFamily(s string) (uuid.UUID, error) {
	const want = "--family takes a family ID, a UUID as list and inspect show it (such as 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d)"
	u, err := uuid.Parse(s)
	if err == nil && u == uuid.Nil {
		return uuid.Nil, usagef("%s; the nil UUID is no family ID", want)
	}
	if err == nil {
		return u, nil
	}
	if tokenShaped.MatchString(s) {
		return uuid.Nil, usagef("%s, and that looks like a token, not a family ID: inspect the token to see its family", want)
	}
	return uuid.Nil, usagef("%s; %q is not one", want, s)
}
