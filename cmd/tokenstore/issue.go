package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

type issueFlags struct {
	subject        string
	ttl, idle, max time.Duration
	meta           []string
	scopes         []string
	json           bool
}

func newIssueCmd(a *app) *cobra.Command {
	var f issueFlags
	cmd := &cobra.Command{
		Use:   "issue --subject S [--ttl D | --idle D [--max D]] [--scope S]... [--meta k=v]...",
		Short: "Issue a token: the token on stdout, its ID and expiry on stderr",
		Long: `Issue a token to a subject. Only the token goes to stdout, so that
T=$(tokenstore issue ...) captures it; its ID and expiry go to stderr. The
token is shown only here: the file keeps its hash.

--ttl gives an absolute lifetime; --idle a sliding one (each use extends it)
capped by --max. With neither, the token gets the library's default policy,
sliding(idle=14d, max=30d). The file is created when it does not exist.
With --url the running application issues it, and with neither flag it
gets the application's default policy.

--scope grants a scope (RFC 6749 §3.3: printable ASCII, no space, '"' or
'\'), once per scope; they are stored under the metadata key "scope".`,
		Example: `  T=$(tokenstore issue --subject alice --ttl 30d --scope orders:read --scope orders:write)
  tokenstore issue --subject ci-bot --idle 1d --max 90d --json`,
		Args:        noArgs,
		Annotations: remoteOK,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options(cmd)
			if err != nil {
				return err
			}
			return a.issue(cmd.Context(), f.subject, opts, f.json)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.subject, "subject", "", "whom the token authenticates, e.g. a user ID (required)")
	fl.Var((*durationValue)(&f.ttl), "ttl", "absolute lifetime: the token dies this long after it is issued")
	fl.Var((*durationValue)(&f.idle), "idle", "sliding lifetime: the token dies this long after its last use")
	fl.Var((*durationValue)(&f.max), "max", "cap on a sliding lifetime, counted from issue (needs --idle)")
	fl.StringArrayVar(&f.scopes, "scope", nil, "grant the token this `scope` (repeatable)")
	fl.StringArrayVar(&f.meta, "meta", nil, "metadata `key=value` stored with the token (repeatable)")
	fl.BoolVar(&f.json, "json", false, "print the token and its details as one JSON object on stdout")
	return cmd
}

// options checks the flags before the file is touched, so a bad call
// creates nothing.
func (f *issueFlags) options(cmd *cobra.Command) ([]tokenstore.IssueOption, error) {
	changed := cmd.Flags().Changed
	if !changed("subject") {
		return nil, usagef("--subject is required")
	}
	if err := checkSubject(f.subject); err != nil {
		return nil, err
	}
	var p tokenstore.Policy
	switch {
	case changed("ttl") && (changed("idle") || changed("max")):
		return nil, usagef("--ttl (absolute) excludes --idle and --max (sliding)")
	case changed("max") && !changed("idle"):
		return nil, usagef("--max caps a sliding lifetime: give --idle too")
	case changed("ttl"):
		if err := checkLifetime("--ttl", f.ttl); err != nil {
			return nil, err
		}
		p = tokenstore.Absolute(f.ttl)
	case changed("idle"):
		if err := checkLifetime("--idle", f.idle); err != nil {
			return nil, err
		}
		if changed("max") && f.max == 0 {
			// The library reads a zero cap as "no cap": refuse it rather
			// than guess which the operator meant.
			return nil, usagef("--max 0s: a cap must be positive (such as --max 30d); leave --max out for a sliding lifetime without a cap")
		}
		if changed("max") && f.max <= f.idle {
			// Sliding(idle, max) with max <= idle always dies max after
			// issue, however it is used: an absolute lifetime in disguise.
			return nil, usagef("--max %s is not longer than --idle %s, so the token would die %s after issue however it is used; give a --max longer than --idle, or --ttl %s for a fixed lifetime",
				formatDuration(f.max), formatDuration(f.idle), formatDuration(f.max), formatDuration(f.max))
		}
		p = tokenstore.Sliding(f.idle, f.max)
	}
	meta, err := parseMeta(f.meta)
	if err != nil {
		return nil, err
	}
	opts := []tokenstore.IssueOption{tokenstore.WithPolicy(p), tokenstore.WithMetadata(meta)}
	if changed("scope") {
		if _, ok := meta[tokenstore.ScopeKey]; ok {
			return nil, usagef("--scope and --meta %s=... both set the scopes: use --scope", tokenstore.ScopeKey)
		}
		if err := checkScopes(f.scopes); err != nil {
			return nil, err
		}
		opts = append(opts, tokenstore.WithScopes(f.scopes...)) // after WithMetadata: added to its map
	}
	if _, err := tokenstore.NewIssueParams(opts...); err != nil {
		return nil, &usageError{err}
	}
	return opts, nil
}

// checkScopes refuses a --scope the library would refuse, saying why.
func checkScopes(scopes []string) error {
	if err := tokenstore.ValidateScopes(scopes...); err != nil {
		return &usageError{&explained{"--scope: " + strings.TrimPrefix(err.Error(), "tokenstore: "), err}}
	}
	return nil
}

// checkLifetime refuses a lifetime under the store's resolution of one
// millisecond, which would let no token live.
func checkLifetime(flag string, d time.Duration) error {
	if d < time.Millisecond {
		return usagef("%s %s: a token must live at least 1ms; give a lifetime such as %s 30d or %s 12h", flag, formatDuration(d), flag, flag)
	}
	return nil
}

// parseMeta reads repeated key=value flags.
func parseMeta(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return nil, usagef("--meta %q: want key=value", kv)
		case k == "":
			return nil, usagef("--meta %q: empty key", kv)
		}
		if _, dup := m[k]; dup {
			return nil, usagef("--meta: key %q given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// issuedJSON is issue's --json output: the token and its Info.
type issuedJSON struct {
	Token string `json:"token"`
	infoJSON
}

func (a *app) issue(ctx context.Context, subject string, opts []tokenstore.IssueOption, asJSON bool) (err error) {
	created := false
	if !a.remote() {
		_, statErr := os.Stat(a.dbPath)
		created = errors.Is(statErr, os.ErrNotExist)
	}
	db, err := a.openStore(openCreate)
	if err != nil {
		return err
	}
	defer closeStore(db, &err)
	if created {
		fmt.Fprintf(a.stderr, "created %s\n", a.dbPath)
	}
	token, info, err := db.Issue(ctx, subject, opts...)
	if err != nil {
		return err
	}
	if asJSON {
		err = writeJSON(a.stdout, issuedJSON{Token: token, infoJSON: newInfoJSON(info, a.now())})
	} else {
		_, err = fmt.Fprintln(a.stdout, token)
	}
	if err != nil {
		return fmt.Errorf("token %s was issued but could not be written out (revoke it: tokenstore revoke --id %s): %w", info.ID, info.ID, err)
	}
	fmt.Fprintf(a.stderr, "issued token %s to %q, %s, expires %s (%s)\n",
		info.ID, info.Subject, formatPolicy(info.Policy), formatTime(info.ExpiresAt), formatAgo(a.now(), info.ExpiresAt))
	return nil
}
