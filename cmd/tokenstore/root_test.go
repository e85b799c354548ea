package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/tokenstore/tokenstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binDir != "" {
			_ = os.RemoveAll(binDir)
		}
	}))
}

// t0 is the clock of every in-process test unless it moves it.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// env is one token file in t.TempDir() and the clock the commands see.
type env struct {
	t   *testing.T
	db  string
	now time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{t: t, db: filepath.Join(t.TempDir(), "tokens.db"), now: t0}
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the command line in-process on e's file ("--db" first), with
// stdin as the standard input.
func (e *env) run(stdin string, args ...string) result {
	return e.runCtx(context.Background(), stdin, args...)
}

func (e *env) runCtx(ctx context.Context, stdin string, args ...string) result {
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, now: func() time.Time { return e.now }}
	code := a.run(ctx, append([]string{"--db", e.db}, args...))
	return result{code, stdout.String(), stderr.String()}
}

// open opens e's file with the library at e's clock, closed at cleanup.
func (e *env) open() *tokenstore.DB {
	e.t.Helper()
	db, err := tokenstore.Open(e.db, &tokenstore.Options{Now: func() time.Time { return e.now }, SweepInterval: -1, TouchInterval: -1})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = db.Close() })
	return db
}

// issue issues a token with the library, closing the file afterwards.
func (e *env) issue(subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info) {
	e.t.Helper()
	db := e.open()
	token, info, err := db.Issue(context.Background(), subject, opts...)
	require.NoError(e.t, err)
	require.NoError(e.t, db.Close())
	return token, info
}

// lookup looks token up with the library.
func (e *env) lookup(token string) (tokenstore.Info, error) {
	e.t.Helper()
	db := e.open()
	defer db.Close()
	return db.Lookup(context.Background(), token)
}

// hold opens e's file for writing and keeps it open until cleanup, as a
// running application does.
func (e *env) hold() {
	e.t.Helper()
	e.open()
}

func (e *env) exists() bool {
	_, err := os.Stat(e.db)
	return err == nil
}

// assertNoToken checks that no token of this store appears in s.
func assertNoToken(t *testing.T, s string, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		assert.NotContains(t, s, tok, "a token was printed")
	}
	assert.NotRegexp(t, `tks_[0-9A-Za-z]{49}`, s, "something shaped like a token was printed")
}

// decodeError decodes the error object a failing command prints on stdout
// under --json.
func decodeError(t *testing.T, stdout string) errorBody {
	t.Helper()
	var v errorJSON
	require.NoError(t, json.Unmarshal([]byte(stdout), &v), "stdout: %q", stdout)
	require.NotEmpty(t, v.Error.Message)
	return v.Error
}

// decodeLines decodes JSON lines into a slice of T.
func decodeLines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	dec := json.NewDecoder(strings.NewReader(s))
	for dec.More() {
		var v T
		require.NoError(t, dec.Decode(&v))
		out = append(out, v)
	}
	return out
}

func TestRun_Root(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no command", nil, exitUsage, "", "no command given"},
		{"no command shows commands", nil, exitUsage, "", "Available Commands"},
		{"unknown command", []string{"frob"}, exitUsage, "", `unknown command "frob"`},
		{"suggestion", []string{"isue"}, exitUsage, "", `did you mean "issue"?`},
		{"unknown flag", []string{"list", "--frob"}, exitUsage, "", "unknown flag: --frob"},
		{"usage hint names the command", []string{"list", "--frob"}, exitUsage, "", "Run 'tokenstore list --help' for usage."},
		{"help", []string{"--help"}, exitOK, "Available Commands", ""},
		{"subcommand help", []string{"issue", "--help"}, exitOK, "--subject", ""},
		{"version flag", []string{"--version"}, exitOK, "tokenstore version", ""},
		{"bad timeout", []string{"--timeout", "0s", "list"}, exitUsage, "", "--timeout must be positive"},
		{"unparsable timeout", []string{"--timeout", "soon", "list"}, exitUsage, "", `invalid duration "soon"`},
		{"bad prefix", []string{"--prefix", "Tks", "list"}, exitUsage, "", "tokenstore: prefix \"Tks\" must be lowercase letters and digits"},
		{"missing file", []string{"list"}, exitFailed, "", "does not exist (name the token file with --db)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			got := e.run("", tt.args...)
			assert.Equal(t, tt.wantCode, got.code, "stderr: %s", got.stderr)
			assert.Contains(t, got.stdout, tt.wantStdout)
			assert.Contains(t, got.stderr, tt.wantStderr)
			assert.False(t, e.exists(), "the file was created")
		})
	}
}

func TestRun_Locked(t *testing.T) {
	e := newEnv(t)
	token, _ := e.issue("alice")
	e.hold()
	tests := []struct {
		name     string
		args     []string
		readOnly bool
	}{
		{"issue", []string{"issue", "--subject", "bob"}, false},
		{"validate", []string{"validate", "-"}, false},
		{"revoke", []string{"revoke", "--subject", "alice"}, false},
		{"sweep", []string{"sweep"}, false},
		{"compact", []string{"compact"}, false},
		{"inspect", []string{"inspect", "-"}, true},
		{"list", []string{"list"}, true},
		{"stats", []string{"stats"}, true},
		{"check", []string{"check"}, true},
		{"backup", []string{"backup", filepath.Join(t.TempDir(), "b.db")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.run(token+"\n", append([]string{"--timeout", "20ms"}, tt.args...)...)
			assert.Equal(t, exitFailed, got.code)
			assert.Empty(t, got.stdout)
			assert.Contains(t, got.stderr, "is held by another process, probably the application that uses it (waited 20ms)")
			assert.Contains(t, got.stderr, "Stop the application")
			assert.Contains(t, got.stderr, "longer --timeout")
			if tt.readOnly {
				assert.Contains(t, got.stderr, "not beside a writer")
			}
			assert.NotContains(t, got.stderr, "timeout\n")
			assertNoToken(t, got.stderr, token)
		})
	}
}

func TestRun_Interrupted(t *testing.T) {
	e := newEnv(t)
	e.issue("alice")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := e.runCtx(ctx, "", "list")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: interrupted\n", got.stderr)
}

func TestRun_NotATokenFile(t *testing.T) {
	e := newEnv(t)
	require.NoError(t, os.WriteFile(e.db, bytes.Repeat([]byte("garbage!"), 2048), 0o600))
	for _, args := range [][]string{{"list"}, {"check"}, {"issue", "--subject", "a"}} {
		got := e.run("", args...)
		assert.Equal(t, exitFailed, got.code, args)
		assert.Equal(t, "tokenstore: "+e.db+" is damaged or not a tokenstore file: invalid database\n", got.stderr, args)
		assert.Equal(t, 1, strings.Count(got.stderr, "tokenstore: "), "one prefix: %s", got.stderr)
	}
}

func TestRun_OtherFiles(t *testing.T) {
	t.Run("another application's bbolt file", func(t *testing.T) {
		e := newEnv(t)
		bdb, err := bolt.Open(e.db, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("sessions"))
			return err
		}))
		require.NoError(t, bdb.Close())
		got := e.run("", "stats")
		assert.Equal(t, exitFailed, got.code)
		assert.Equal(t, "tokenstore: "+e.db+" is damaged or not a tokenstore file: a bbolt file of another application (no tokenstore meta bucket)\n", got.stderr)
	})
	t.Run("empty file", func(t *testing.T) {
		e := newEnv(t)
		require.NoError(t, os.WriteFile(e.db, nil, 0o600))
		got := e.run("", "list")
		assert.Equal(t, exitFailed, got.code)
		assert.Equal(t, "tokenstore: "+e.db+" is empty: not a tokenstore file yet\n", got.stderr)
		// A writer initialises it.
		require.Equal(t, exitOK, e.run("", "sweep").code)
		assert.Equal(t, exitOK, e.run("", "list").code)
	})
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		give error
		want string
	}{
		{errors.New("plain"), "tokenstore: plain"},
		{errors.New("tokenstore: once"), "tokenstore: once"},
		{fmt.Errorf("%w (waited 1s)", tokenstore.ErrLocked), "tokenstore: file is locked by another process (waited 1s)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, errorText(context.Background(), tt.give))
	}
}

func TestFormatting(t *testing.T) {
	assert.Equal(t, "512 B", formatBytes(512))
	assert.Equal(t, "32.0 KiB", formatBytes(32<<10))
	assert.Equal(t, "1.5 MiB", formatBytes(3<<19))

	assert.Equal(t, "now", formatAgo(t0, t0))
	assert.Equal(t, "in 14d", formatAgo(t0, t0.Add(14*day)))
	assert.Equal(t, "2h30m ago", formatAgo(t0, t0.Add(-150*time.Minute)))

	assert.Equal(t, "absolute(30d)", formatPolicy(tokenstore.Absolute(30*day)))
	assert.Equal(t, "sliding(idle=1h)", formatPolicy(tokenstore.Sliding(time.Hour, 0)))
	assert.Equal(t, "sliding(idle=14d, max=30d)", formatPolicy(tokenstore.Sliding(14*day, 30*day)))

	assert.Equal(t, `a=1, b="x y", c="", d="\t"`, formatMetadata(map[string]string{"d": "\t", "c": "", "b": "x y", "a": "1"}))
}
