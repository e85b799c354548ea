package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
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

	now        func() time.Time // the store's clock; tests fix it
	dbPath     string           // --db
	timeout    time.Duration    // --timeout: Options.LockTimeout, or each request's with --url
	timeoutSet bool             // --timeout was given
	prefix     string           // --prefix: Options.Prefix
	url        string           // --url, or $TOKENSTORE_URL without --db: the application's admin API
	credFile   string           // --credential-file: the admin token for --url
	readOnly   bool             // the file was opened read-only: a reuse revokes nothing
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
	code := exitFailed
	if _, ok := errors.AsType[*usageError](err); ok {
		code = exitUsage
	}
	msg := errorText(ctx, err)
	if _, written := errors.AsType[*shownError](err); !written && wantsJSON(cmd, args) {
		_ = writeJSON(a.stdout, errorJSON{Error: errorBody{Code: errorCode(ctx, err), Message: msg, ExitCode: code}})
	}
	fmt.Fprintln(a.stderr, msg)
	if code == exitUsage {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// errorText renders a failure for the operator. The library's errors
// start with "tokenstore: " and are printed as they are; the command's own
// get that prefix in front. Whatever may be a token is hidden: an error
// may repeat the operator's input, and a token typed in the wrong place
// must not reach the logs that keep stderr.
func errorText(ctx context.Context, err error) string {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		if stopped, ok := errors.AsType[errStopped](context.Cause(ctx)); ok {
			return "tokenstore: " + stopped.Error() // "interrupted by SIGHUP"
		}
		return "tokenstore: interrupted"
	}
	msg := redactTokens(err.Error())
	if !strings.HasPrefix(msg, "tokenstore: ") {
		msg = "tokenstore: " + msg
	}
	return msg
}

// errorJSON is what every command prints on stdout when it fails under
// --json: {"error": {"code": "not_found", "message": "...", "exit_code": 1}}.
// The message is the one printed on stderr; the code names its cause for
// scripts, and does not change when the message's wording does.
type errorJSON struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	ExitCode int    `json:"exit_code"`
}

// errorCodes name the library's sentinel errors for errorJSON, in the
// order they are tried.
var errorCodes = []struct {
	err  error
	code string
}{
	{tokenstore.ErrMalformed, "malformed"},
	{tokenstore.ErrNotFound, "not_found"},
	{tokenstore.ErrExpired, "expired"},
	{tokenstore.ErrReused, "reused"},
	{tokenstore.ErrInvalidGrace, "invalid_grace"},
	{tokenstore.ErrLocked, "locked"},
	{tokenstore.ErrCorrupt, "corrupt"},
	{tokenstore.ErrReadOnly, "read_only"},
	{tokenstore.ErrInvalidSubject, "invalid_subject"},
	{tokenstore.ErrInvalidPolicy, "invalid_policy"},
	{tokenstore.ErrMetadataTooLarge, "metadata_too_large"},
	{tokenstore.ErrTokenLimit, "token_limit"},
	{tokenstore.ErrPrefixMismatch, "prefix_mismatch"},
	{tokenstore.ErrInsufficientScope, "insufficient_scope"},
	{tokenstore.ErrInvalidScope, "invalid_scope"},
	{tokenstore.ErrClosed, "closed"},
	{syscall.EISDIR, "is_directory"},
	{fs.ErrInvalid, "not_regular_file"}, // Open: a FIFO, a device, a socket
	{fs.ErrExist, "exists"},
	{fs.ErrNotExist, "not_exist"},
	{fs.ErrPermission, "permission"},
	{admin.ErrUnauthenticated, "unauthorized"},
	{admin.ErrForbidden, "forbidden"},
	{errUnreachable, "unreachable"},
	{errBadAnswer, "bad_answer"},
	{errServer, "server_error"},
	{errFileOnly, "file_only"},
}

// errorCode names err's cause: one of errorCodes, "interrupted", "usage"
// for any other usage error, or "failed".
func errorCode(ctx context.Context, err error) string {
	if _, stopped := errors.AsType[errStopped](err); stopped || errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return "interrupted" // errStopped: bench stopped by a signal main does not catch (SIGHUP, SIGPIPE)
	}
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	if _, ok := errors.AsType[*usageError](err); ok {
		return "usage"
	}
	return "failed"
}

// wantsJSON reports whether the command line asked for --json. It reads
// the parsed flag when there is one, and the raw arguments when parsing
// stopped before it (an unknown flag, an unknown command).
func wantsJSON(cmd *cobra.Command, args []string) bool {
	if cmd != nil {
		if f := cmd.Flags().Lookup("json"); f != nil && f.Changed {
			return f.Value.String() == "true"
		}
	}
	for _, arg := range args {
		if arg == "--" {
			break
		}
		if arg == "--json" {
			return true
		}
		if v, ok := strings.CutPrefix(arg, "--json="); ok {
			b, err := strconv.ParseBool(v)
			return err == nil && b
		}
	}
	return false
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

// shownError marks a failure whose --json result is already on stdout
// (check's problems, an expired token's details), so that run adds no
// second object there.
type shownError struct{ err error }

func (e *shownError) Error() string { return e.err.Error() }
func (e *shownError) Unwrap() error { return e.err }

// remoteOK is the annotation of the commands that run against a running
// application (--url) as well as on a file.
var remoteOK = map[string]string{"remote": "yes"}

// fileOnlyWhy says why a command cannot run with --url, and what to do.
var fileOnlyWhy = map[string]string{
	"validate": "it counts a use, as the application's middleware does, and the admin API only looks tokens up: use inspect, which shows the same details without counting a use",
	"rotate":   "the admin API has no rotation: issue a new token (issue --subject S), hand it over, then revoke the old one (revoke --id ID)",
	"sweep":    "the application's own sweeper deletes expired tokens (Options.SweepInterval, every minute by default)",
	"check":    "it reads every page of the file, which the running application holds: stop the application and run check --db FILE",
	"backup":   "the admin API does not serve the file: stop the application and run backup --db FILE, or call DB.Backup from inside the application",
	"compact":  "it rewrites the file, which the running application holds: stop the application and run compact --db FILE",
	"bench":    "it measures a token file on this machine and never talks to an application",
}

// chooseStore decides between the file and the application, before the
// command runs: --db and --url exclude each other, $TOKENSTORE_URL counts
// unless --db is given, and a command that needs the file refuses --url.
func (a *app) chooseStore(cmd *cobra.Command) error {
	changed := cmd.Flags().Changed
	a.timeoutSet = changed("timeout")
	switch {
	case changed("db") && changed("url"):
		return usagef("give --db (a token file) or --url (a running application), not both")
	case changed("url") && a.url == "":
		return usagef("--url is empty: give the URL where the application mounts the admin handler, such as http://127.0.0.1:8080/admin")
	case !changed("db") && !changed("url"):
		a.url = os.Getenv(envURL)
	}
	if !a.remote() {
		if changed("credential-file") {
			return usagef("--credential-file is the admin credential for --url (or $%s); a token file needs none", envURL)
		}
		return nil
	}
	for c := cmd; c != nil; c = c.Parent() {
		// help, version and shell completion (cobra's hidden __complete)
		// touch no store.
		if n := c.Name(); c.Annotations["remote"] != "" || n == "help" || n == "completion" || n == "version" || strings.HasPrefix(n, "__") {
			return nil
		}
	}
	if !cmd.HasParent() {
		return nil // the root: it prints usage
	}
	why, ok := fileOnlyWhy[cmd.Name()]
	if !ok {
		why = "it works on the token file itself: stop the application and run it with --db FILE"
	}
	from := "--url"
	if !changed("url") {
		from += " ($" + envURL + " is set; --db FILE runs on a file)"
	}
	return &usageError{&explained{fmt.Sprintf("%s is not available with %s: %s", cmd.Name(), from, why), errFileOnly}}
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "tokenstore COMMAND",
		Short: "Administer a tokenstore token file, or a running application through its admin API",
		Long: `tokenstore administers the token file of an application that uses the
tokenstore Go package: issue a token for a script, see who holds tokens,
revoke a leaked one, sweep expired ones, check the file after a crash, back
it up and compact it.

bbolt lets one process at a time open the file for writing, and a writer
keeps it locked until it closes it. While the application runs, commands on
its file fail after --timeout. Read-only commands (inspect, list, stats,
check, backup) can run beside each other, not beside a writer.

A running application that mounts the admin handler (package
github.com/tokenstore/tokenstore/admin) is operated through it instead:
--url http://127.0.0.1:8080/admin (or $TOKENSTORE_URL, unless --db is given)
runs list --subject, inspect, revoke, issue, stats and expiring against its
admin API, with the same output and exit codes. The admin credential, a
token with the scope "tokenstore:admin", is read from --credential-file or
$TOKENSTORE_ADMIN_TOKEN, never from the command line, where ps shows it.
--timeout then bounds each request (default 30s). Commands that need the
file (validate, rotate, sweep, check, backup, compact) say so and exit 2.

Results go to stdout, diagnostics to stderr. Exit status: 0 ok, 1 failed,
2 usage error. With --json a command prints its result as JSON on stdout,
and a failure as {"error": {"code": ..., "message": ..., "exit_code": ...}}
there too (the message is the one on stderr). Durations take Go syntax
(90m, 36h) or days (14d, 1d12h).`,
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
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			if _, err := tokenstore.NewFormat(a.prefix); err != nil {
				return &usageError{err} // the library's text names the prefix and what it accepts
			}
			return a.chooseStore(cmd)
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
	pf.Var((*durationValue)(&a.timeout), "timeout", "how long to wait for another process to release the file (with --url: for each answer, default 30s)")
	pf.StringVar(&a.prefix, "prefix", "", "the application's token prefix (its Options.Prefix; default: the one the file records, "+tokenstore.DefaultPrefix+" for a new file)")
	pf.StringVar(&a.url, "url", "", "run against the running application whose admin handler is mounted at this `URL` (default $"+envURL+")")
	pf.StringVar(&a.credFile, "credential-file", "", "with --url: a `file` holding the admin token (default: $"+envAdminToken+")")

	// Every command has its own --json. The root's, hidden, is parsed only
	// when no command was found, so that "tokenstore nosuch --json" says
	// "unknown command" (as a JSON object) rather than "unknown flag".
	root.Flags().Bool("json", false, "print a failure as a JSON object")
	_ = root.Flags().MarkHidden("json")

	root.AddCommand(
		newIssueCmd(a),
		newValidateCmd(a),
		newInspectCmd(a),
		newRevokeCmd(a),
		newRotateCmd(a),
		newListCmd(a),
		newExpiringCmd(a),
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
