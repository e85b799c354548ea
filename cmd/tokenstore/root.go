package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tokenstore/tokenstore"
)

// Exit codes.
const (
	exitOK     = 0 // the command did what was asked
	exitFailed = 1 // it could not: the error is on stderr
	exitUsage  = 2 // it was called wrongly: bad flag, argument or value
)

// app is what every command shares: the streams it writes to and the
// global flags. Commands write nothing anywhere else.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	now     func() time.Time // the store's clock; tests fix it
	dbPath  string           // --db
	timeout time.Duration    // --timeout: Options.LockTimeout
	prefix  string           // --prefix: Options.Prefix
}

// run runs the command line args and returns the process's exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	return a.run(ctx, args)
}

func (a *app) run(ctx context.Context, args []string) int {
	root := newRootCmd(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if ue, ok := errors.AsType[*usageError](err); ok {
		fmt.Fprintf(a.stderr, "tokenstore: %v\nRun '%s --help' for usage.\n", ue.err, cmd.CommandPath())
		return exitUsage
	}
	fmt.Fprintln(a.stderr, errorText(ctx, err))
	return exitFailed
}

// errorText renders a failure for the operator: one "tokenstore: " in
// front, however many layers of the library's errors repeat it.
func errorText(ctx context.Context, err error) string {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return "tokenstore: interrupted"
	}
	msg := strings.ReplaceAll(err.Error(), ": tokenstore: ", ": ")
	if !strings.HasPrefix(msg, "tokenstore: ") {
		msg = "tokenstore: " + msg
	}
	return msg
}

// usageError marks an error as the caller's: the command was called
// wrongly and exits 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// explained gives an error a text written for the operator while keeping
// the original for errors.Is.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

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

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "tokenstore COMMAND",
		Short: "Administer a tokenstore token file",
		Long: `tokenstore administers the token file of an application that uses the
tokenstore Go package: issue a token for a script, see who holds tokens,
revoke a leaked one, sweep expired ones, check the file after a crash, back
it up and compact it.

bbolt lets one process at a time open the file for writing, and a writer
keeps it locked until it closes it. While the application runs, commands
fail after --timeout; stop the application first, or use its own admin
path. Read-only commands (inspect, list, stats, check, backup) can run
beside each other, not beside a writer.

Results go to stdout, diagnostics to stderr. Exit status: 0 ok, 1 failed,
2 usage error. Durations take Go syntax (90m, 36h) or days (14d, 1d12h).`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				return usagef("unknown command %q (did you mean %q?)", args[0], s[0])
			}
			return usagef("unknown command %q", args[0])
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(a.stderr, cmd.UsageString())
			return usagef("no command given")
		},
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if a.timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			if _, err := tokenstore.NewFormat(a.prefix); err != nil {
				return &usageError{fmt.Errorf("--prefix: %w", err)}
			}
			return nil
		},
	}
	root.SuggestionsMinimumDistance = 2
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	a.timeout = time.Second
	pf := root.PersistentFlags()
	pf.StringVar(&a.dbPath, "db", "tokens.db", "the token `file`")
	pf.Var((*durationValue)(&a.timeout), "timeout", "how long to wait for another process to release the file")
	pf.StringVar(&a.prefix, "prefix", tokenstore.DefaultPrefix, "the application's token prefix (its Options.Prefix)")

	root.AddCommand(
		newIssueCmd(a),
		newValidateCmd(a),
		newInspectCmd(a),
		newRevokeCmd(a),
		newListCmd(a),
		newSweepCmd(a),
		newStatsCmd(a),
		newCheckCmd(a),
		newBackupCmd(a),
		newCompactCmd(a),
		newVersionCmd(a),
		newBenchCmd(a),
	)
	return root
}

// openMode says how a command opens the file.
type openMode int

const (
	openRead   openMode = iota // read-only, shared lock; the file must exist
	openWrite                  // read-write; the file must exist
	openCreate                 // read-write, created when missing
)

// options are the store options every command uses: no background work,
// every use written at once, no cache (one command, few tokens).
func (a *app) options(readOnly bool) *tokenstore.Options {
	return &tokenstore.Options{
		ReadOnly:      readOnly,
		LockTimeout:   a.timeout,
		Prefix:        a.prefix,
		Now:           a.now,
		SweepInterval: -1,
		TouchInterval: -1,
		CacheSize:     -1,
	}
}

// open opens the token file. A missing file is an error unless mode is
// openCreate, so that a mistyped --db never leaves an empty file behind.
func (a *app) open(mode openMode) (*tokenstore.DB, error) {
	if err := a.mustExist(mode); err != nil {
		return nil, err
	}
	db, err := tokenstore.Open(a.dbPath, a.options(mode == openRead))
	if err != nil {
		return nil, a.openError(err, mode == openRead)
	}
	return db, nil
}

func (a *app) mustExist(mode openMode) error {
	if mode == openCreate {
		return nil
	}
	st, err := os.Stat(a.dbPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &explained{fmt.Sprintf("%s does not exist (name the token file with --db)", a.dbPath), err}
	case err == nil && st.Size() == 0 && mode == openRead:
		// bbolt would try to initialise it through a read-only descriptor.
		return fmt.Errorf("%s is empty: not a tokenstore file yet", a.dbPath)
	}
	return nil
}

// openError explains the errors of Open that an operator meets.
func (a *app) openError(err error, readOnly bool) error {
	switch {
	case errors.Is(err, tokenstore.ErrLocked):
		var b strings.Builder
		fmt.Fprintf(&b, "%s is held by another process, probably the application that uses it (waited %s).\n", a.dbPath, formatDuration(a.timeout))
		b.WriteString("bbolt lets one process at a time open a file for writing, and it keeps the file locked until it closes it.\n")
		b.WriteString("Stop the application and run this again, or use the application's own admin path")
		if readOnly {
			b.WriteString(";\nread-only commands (inspect, list, stats, check, backup) run beside each other, not beside a writer")
		}
		b.WriteString(". If it is about to exit, a longer --timeout waits for it.")
		return &explained{b.String(), err}
	case errors.Is(err, fs.ErrPermission) && !readOnly:
		return &explained{fmt.Sprintf("cannot open %s for writing: permission denied; inspect, list, stats, check and backup only need to read it", a.dbPath), err}
	case errors.Is(err, tokenstore.ErrCorrupt):
		// Keep only what follows the sentinel's text: the reason.
		_, why, _ := strings.Cut(err.Error(), strings.TrimPrefix(tokenstore.ErrCorrupt.Error(), "tokenstore: "))
		return &explained{fmt.Sprintf("%s is damaged or not a tokenstore file%s", a.dbPath, why), err}
	}
	return err
}

// closeDB closes db, reporting its error into *err unless one is there.
func closeDB(db *tokenstore.DB, err *error) {
	if cerr := db.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

// maxTokenInput bounds what is read from stdin for one token.
const maxTokenInput = 4096

// readToken returns the token an argument names: args[0], or one line of
// stdin when args is empty or "-", so the token stays out of shell
// history and ps. On a terminal it is read without echo.
func (a *app) readToken(args []string) (string, error) {
	if len(args) == 1 && args[0] != "-" {
		return args[0], nil
	}
	var line string
	if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.stderr, "token (not echoed): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", fmt.Errorf("reading the token from the terminal: %w", err)
		}
		line = string(b)
	} else {
		r := bufio.NewReader(io.LimitReader(a.stdin, maxTokenInput))
		var err error
		line, err = r.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the token from stdin: %w", err)
		}
	}
	tok := strings.TrimSpace(line)
	if tok == "" {
		return "", errors.New("no token on stdin (give it as an argument or on the first line of stdin)")
	}
	return tok, nil
}

// tokenError explains why a token was refused, never repeating it.
func (a *app) tokenError(err error, token string) error {
	var msg string
	switch {
	case errors.Is(err, tokenstore.ErrMalformed):
		msg = "invalid token: malformed" + strings.TrimPrefix(err.Error(), tokenstore.ErrMalformed.Error())
		if !strings.HasPrefix(token, a.prefix+"_") {
			msg += fmt.Sprintf("; this file's tokens start with %q (set --prefix to the application's prefix)", a.prefix+"_")
		}
	case errors.Is(err, tokenstore.ErrNotFound):
		msg = "invalid token: not found (never issued, revoked, or expired and swept)"
	case errors.Is(err, tokenstore.ErrExpired):
		msg = "invalid token: expired"
	default:
		return err
	}
	return &explained{msg, err}
}

// infoJSON is how commands print a token's Info with --json. Times are
// UTC; policy is in tokenstore.ParsePolicy's syntax.
type infoJSON struct {
	ID         string            `json:"id"`
	Subject    string            `json:"subject"`
	CreatedAt  time.Time         `json:"created_at"`
	LastUsedAt time.Time         `json:"last_used_at"`
	ExpiresAt  time.Time         `json:"expires_at"`
	Expired    bool              `json:"expired"`
	Policy     string            `json:"policy"`
	Scopes     []string          `json:"scopes,omitempty"`   // also in metadata, under "scope"
	Metadata   map[string]string `json:"metadata,omitempty"` // as stored
}

func newInfoJSON(info tokenstore.Info, now time.Time) infoJSON {
	return infoJSON{
		ID:         info.ID.String(),
		Subject:    info.Subject,
		CreatedAt:  info.CreatedAt.UTC(),
		LastUsedAt: info.LastUsedAt.UTC(),
		ExpiresAt:  info.ExpiresAt.UTC(),
		Expired:    !now.Before(info.ExpiresAt),
		Policy:     info.Policy.String(),
		Scopes:     info.Scopes(),
		Metadata:   info.Metadata,
	}
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printInfo writes a token's Info as aligned "key value" lines.
func printInfo(w io.Writer, info tokenstore.Info, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	lastUsed := "never"
	if info.LastUsedAt.After(info.CreatedAt) {
		lastUsed = formatTime(info.LastUsedAt) + " (" + formatAgo(now, info.LastUsedAt) + ")"
	}
	fmt.Fprintf(tw, "id\t%s\n", info.ID)
	fmt.Fprintf(tw, "subject\t%s\n", info.Subject)
	fmt.Fprintf(tw, "created\t%s (%s)\n", formatTime(info.CreatedAt), formatAgo(now, info.CreatedAt))
	fmt.Fprintf(tw, "last used\t%s\n", lastUsed)
	fmt.Fprintf(tw, "expires\t%s (%s)\n", formatTime(info.ExpiresAt), formatAgo(now, info.ExpiresAt))
	fmt.Fprintf(tw, "policy\t%s\n", formatPolicy(info.Policy))
	if s := info.Scopes(); s != nil {
		fmt.Fprintf(tw, "scopes\t%s\n", strings.Join(s, " "))
	}
	if m := metadataWithoutScopes(info.Metadata); len(m) > 0 {
		fmt.Fprintf(tw, "metadata\t%s\n", formatMetadata(m))
	}
	return tw.Flush()
}

// formatTime writes t in UTC, to the second.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// formatAgo says how far t is from now: "in 13d23h", "2h5m ago", "now".
func formatAgo(now, t time.Time) string {
	d := t.Sub(now)
	future := d > 0
	if !future {
		d = -d
	}
	if d >= time.Hour {
		d = d.Round(time.Minute)
	} else {
		d = d.Round(time.Second)
	}
	switch {
	case d == 0:
		return "now"
	case future:
		return "in " + formatDuration(d)
	}
	return formatDuration(d) + " ago"
}

// formatPolicy is Policy.String with days: "sliding(idle=14d, max=30d)".
func formatPolicy(p tokenstore.Policy) string {
	switch {
	case p.IsZero():
		return "default"
	case !p.IsSliding():
		return "absolute(" + formatDuration(p.TTL()) + ")"
	case p.MaxLifetime() == 0:
		return "sliding(idle=" + formatDuration(p.TTL()) + ")"
	}
	return "sliding(idle=" + formatDuration(p.TTL()) + ", max=" + formatDuration(p.MaxLifetime()) + ")"
}

// metadataWithoutScopes is m without the key that holds the scopes, which
// the text output shows on their own.
func metadataWithoutScopes(m map[string]string) map[string]string {
	if _, ok := m[tokenstore.ScopeKey]; !ok {
		return m
	}
	m = maps.Clone(m)
	delete(m, tokenstore.ScopeKey)
	return m
}

// formatMetadata writes m as "k=v, k=v", sorted, quoting what would blur.
func formatMetadata(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIfNeeded(k))
		b.WriteByte('=')
		b.WriteString(quoteIfNeeded(m[k]))
	}
	return b.String()
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " ,=\"") {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// count writes "1 token", "2 tokens".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// formatBytes writes n in binary units: "512 B", "40.0 KiB", "1.3 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
