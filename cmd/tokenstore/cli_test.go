package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// The tests in this file run the built binary, one per line of what a new
// user met (issue 14).

// TestCLI_JSONOnFailure: under --json a failing command prints an error
// object on stdout, with the exit code it has without --json.
func TestCLI_JSONOnFailure(t *testing.T) {
	c := newCLI(t)
	token := c.issue("alice")
	require.NoError(t, os.WriteFile(c.path("garbage.db"), bytes4k("garbage!"), 0o600))

	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantErr  string // the error object's code
	}{
		{"check a damaged file", []string{"--db", "garbage.db", "check"}, "", exitFailed, "corrupt"},
		{"validate a malformed token", []string{"--db", "tokens.db", "validate", "-"}, "hello\n", exitFailed, "malformed"},
		{"a token as an argument", []string{"--db", "tokens.db", "validate", token}, "", exitUsage, "usage"},
		{"inspect a missing file", []string{"--db", "nope.db", "inspect", "-"}, token + "\n", exitFailed, "not_exist"},
		{"list a damaged file", []string{"--db", "garbage.db", "list"}, "", exitFailed, "corrupt"},
		{"stats a missing file", []string{"--db", "nope.db", "stats"}, "", exitFailed, "not_exist"},
		{"sweep a damaged file", []string{"--db", "garbage.db", "sweep"}, "", exitFailed, "corrupt"},
		{"compact a missing file", []string{"--db", "nope.db", "compact"}, "", exitFailed, "not_exist"},
		{"backup a missing file", []string{"--db", "nope.db", "backup", "b.db"}, "", exitFailed, "not_exist"},
		{"revoke an unknown ID", []string{"--db", "tokens.db", "revoke", "--id", "01a229bd-ee4a-71b7-bcf1-afc09bcf8202"}, "", exitFailed, "not_found"},
		{"rotate a malformed token", []string{"--db", "tokens.db", "rotate", "-"}, "tks_nope\n", exitFailed, "malformed"},
		{"issue without a subject", []string{"--db", "tokens.db", "issue"}, "", exitUsage, "usage"},
		{"issue to an empty subject", []string{"--db", "tokens.db", "issue", "--subject", ""}, "", exitUsage, "invalid_subject"},
		{"an unknown flag", []string{"--db", "tokens.db", "list", "--frob"}, "", exitUsage, "usage"},
		{"version with an argument", []string{"version", "x"}, "", exitUsage, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := c.run(tt.stdin, tt.args...)
			require.Equal(t, tt.wantCode, plain.code, plain.stderr)
			assert.Empty(t, plain.stdout)

			got := c.run(tt.stdin, append(tt.args, "--json")...)
			assert.Equal(t, tt.wantCode, got.code, "the exit code does not change under --json")
			e := decodeError(t, got.stdout)
			assert.Equal(t, tt.wantErr, e.Code)
			assert.Equal(t, tt.wantCode, e.ExitCode)
			assert.Equal(t, strings.SplitN(got.stderr, "\n", 2)[0], e.Message, "stdout and stderr say the same")
			assertNoToken(t, got.stdout+got.stderr, token)
		})
	}
}

// bytes4k is 4 KiB of s repeated: a file bbolt refuses.
func bytes4k(s string) []byte { return []byte(strings.Repeat(s, 4096/len(s))) }

// TestCLI_JSONSaysWhatTextSays: policies in the same units, and a token
// never used is null in JSON where text says "never".
func TestCLI_JSONSaysWhatTextSays(t *testing.T) {
	c := newCLI(t)
	abs := c.issue("alice", "--ttl", "30d")
	c.issue("bob", "--idle", "14d", "--max", "90d")

	text := c.run("", "--db", "tokens.db", "list")
	require.Equal(t, exitOK, text.code, text.stderr)
	assert.Regexp(t, `(?m)^\S+ +\S+ +alice .* never +\S+ +absolute\(30d\)`, text.stdout)
	assert.Regexp(t, `(?m)^\S+ +\S+ +bob .* never +\S+ +sliding\(idle=14d, max=90d\)`, text.stdout)

	js := c.run("", "--db", "tokens.db", "list", "--json")
	require.Equal(t, exitOK, js.code, js.stderr)
	rows := decodeLines[map[string]any](t, js.stdout)
	require.Len(t, rows, 2)
	assert.Equal(t, "absolute(30d)", rows[0]["policy"])
	assert.Equal(t, "sliding(idle=14d, max=90d)", rows[1]["policy"])
	for _, r := range rows {
		v, ok := r["last_used_at"]
		assert.True(t, ok, "last_used_at is there")
		assert.Nil(t, v, "a token never used has last_used_at null")
	}

	stats := c.run("", "--db", "tokens.db", "stats", "--json")
	require.Equal(t, exitOK, stats.code, stats.stderr)
	var s statsJSON
	require.NoError(t, json.Unmarshal([]byte(stats.stdout), &s))
	assert.Equal(t, map[string]int{"absolute(30d)": 1, "sliding(idle=14d, max=90d)": 1}, s.Tokens.Policies)

	// Once used, both say when.
	require.Equal(t, exitOK, c.run(abs+"\n", "--db", "tokens.db", "validate").code)
	text = c.run(abs+"\n", "--db", "tokens.db", "inspect")
	require.Equal(t, exitOK, text.code, text.stderr)
	used := regexp.MustCompile(`(?m)^last used +(\S+) `).FindStringSubmatch(text.stdout)
	require.Len(t, used, 2, text.stdout)
	js = c.run(abs+"\n", "--db", "tokens.db", "inspect", "--json")
	require.Equal(t, exitOK, js.code, js.stderr)
	var info infoJSON
	require.NoError(t, json.Unmarshal([]byte(js.stdout), &info))
	require.NotNil(t, info.LastUsedAt)
	assert.Equal(t, used[1], info.LastUsedAt.Truncate(time.Second).Format(time.RFC3339))
	assert.Equal(t, "absolute(30d)", info.Policy)
}

// TestCLI_OnePrefix: every error says "tokenstore:" once and names a path
// once.
func TestCLI_OnePrefix(t *testing.T) {
	c := newCLI(t)
	c.issue("alice")
	require.NoError(t, os.WriteFile(c.path("ro.db"), nil, 0o600))
	require.Equal(t, exitOK, c.run("", "--db", "ro.db", "sweep").code) // a tokenstore file now
	require.NoError(t, os.Chmod(c.path("ro.db"), 0))

	tests := []struct {
		name     string
		cli      *cli
		args     []string
		wantCode int
		want     string
	}{
		{"zero ttl", c, []string{"issue", "--subject", "a", "--ttl", "0"}, exitUsage, "--ttl 0s: a token must live at least 1ms"},
		{"empty subject", c, []string{"issue", "--subject", ""}, exitUsage, "tokenstore: invalid subject: empty"},
		{"empty subject to revoke", c, []string{"revoke", "--subject", ""}, exitUsage, "tokenstore: invalid subject: empty"},
		{"bad prefix", c, []string{"--prefix", "Tks", "list"}, exitUsage, `tokenstore: prefix "Tks" must be lowercase letters and digits`},
		{"unreadable file", c.other(), []string{"--db", "ro.db", "list"}, exitFailed, "cannot read ro.db: permission denied"},
		{"unreadable file to write", c.other(), []string{"--db", "ro.db", "sweep"}, exitFailed, "cannot open ro.db: permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if !slices.Contains(args, "--db") {
				args = append([]string{"--db", "tokens.db"}, args...)
			}
			got := tt.cli.run("", args...)
			assert.Equal(t, tt.wantCode, got.code)
			assert.Contains(t, got.stderr, tt.want)
			assert.Equal(t, 1, strings.Count(got.stderr, "tokenstore:"), "one prefix: %s", got.stderr)
			assert.NotContains(t, got.stderr, "ro.db: open ro.db")
		})
	}
}

// TestCLI_IssueRefusesNonsense: a policy no one means is refused with what
// would be accepted, and creates nothing.
func TestCLI_IssueRefusesNonsense(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--idle", "10d", "--max", "1d"}, "--max 1d is not longer than --idle 10d, so the token would die 1d after issue however it is used; give a --max longer than --idle, or --ttl 1d for a fixed lifetime"},
		{[]string{"--idle", "1d", "--max", "1d"}, "give a --max longer than --idle"},
		{[]string{"--idle", "0s"}, "--idle 0s: a token must live at least 1ms; give a lifetime such as --idle 30d or --idle 12h"},
		{[]string{"--ttl", "-1d"}, "must not be negative"},
		{[]string{"--ttl", "1.5d"}, "days must be a whole number (1d12h for a day and a half)"},
		{[]string{"--ttl", "soon"}, "use Go syntax (90m, 36h) or days (14d, 1d12h)"},
		{[]string{"--max", "30d"}, "--max caps a sliding lifetime: give --idle too"},
		{[]string{"--meta", "scope"}, `--meta "scope": want key=value`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c := newCLI(t)
			got := c.run("", append([]string{"--db", "tokens.db", "issue", "--subject", "a"}, tt.args...)...)
			assert.Equal(t, exitUsage, got.code)
			assert.Empty(t, got.stdout)
			assert.Contains(t, got.stderr, tt.want)
			assert.NoFileExists(t, c.path("tokens.db"))
		})
	}
}

// TestCLI_BackupIntoDirectory: a directory receives the copy under the
// token file's name.
func TestCLI_BackupIntoDirectory(t *testing.T) {
	c := newCLI(t)
	token := c.issue("alice")
	require.NoError(t, os.Mkdir(c.path("backups"), 0o755))

	got := c.run("", "--db", "tokens.db", "backup", "backups")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, "backed up tokens.db to "+filepath.Join("backups", "tokens.db")+" (20.0 KiB)\n", got.stdout)
	assert.Equal(t, exitOK, c.run(token+"\n", "--db", filepath.Join("backups", "tokens.db"), "inspect").code)
	entries, err := os.ReadDir(c.path("backups"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left")

	// A directory that does not exist is named as such.
	got = c.run("", "--db", "tokens.db", "backup", "nowhere/")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: cannot back up to nowhere/: no such directory (create it first, or name a file)\n", got.stderr)
}

// TestCLI_BackupNeverOverwrites: an existing file is kept unless --force.
func TestCLI_BackupNeverOverwrites(t *testing.T) {
	c := newCLI(t)
	token := c.issue("alice")
	require.NoError(t, os.WriteFile(c.path("keep.db"), []byte("an older backup"), 0o600))
	require.NoError(t, os.Mkdir(c.path("dir"), 0o755))
	require.NoError(t, os.WriteFile(c.path("dir/tokens.db"), []byte("an older backup"), 0o600))

	for _, out := range []string{"keep.db", "dir"} {
		got := c.run("", "--db", "tokens.db", "backup", out)
		assert.Equal(t, exitFailed, got.code, out)
		assert.Contains(t, got.stderr, "already exists: not replaced (give --force to replace it, or name another file)")
		got = c.run("", "--db", "tokens.db", "backup", out, "--json")
		assert.Equal(t, "exists", decodeError(t, got.stdout).Code)
	}
	for _, f := range []string{"keep.db", "dir/tokens.db"} {
		b, err := os.ReadFile(c.path(f))
		require.NoError(t, err)
		assert.Equal(t, "an older backup", string(b), "%s was overwritten", f)
	}

	got := c.run("", "--db", "tokens.db", "backup", "keep.db", "--force")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, exitOK, c.run(token+"\n", "--db", "keep.db", "inspect").code)
}

// TestCLI_PermissionHints: the hint names the real cause.
func TestCLI_PermissionHints(t *testing.T) {
	c := newCLI(t)
	c.issue("alice")
	require.NoError(t, os.Mkdir(c.path("locked"), 0o555))
	require.NoError(t, os.Chmod(c.path("tokens.db"), 0o444))
	o := c.other()

	// A file to create in a directory this user may not write.
	got := o.run("", "--db", "locked/new.db", "issue", "--subject", "a")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: cannot create locked/new.db: permission denied: this user may not create files in locked (give --db a file in a writable directory)\n", got.stderr)
	assert.NotContains(t, got.stderr, "only need to read it")
	assert.NoFileExists(t, c.path("locked/new.db"))

	// A file this user may read but not write.
	got = o.run("", "--db", "tokens.db", "sweep")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: cannot open tokens.db for writing: permission denied; inspect, list, stats, check and backup only need to read it\n", got.stderr)
	got = o.run("", "--db", "tokens.db", "list")
	assert.Equal(t, exitOK, got.code, "and reading it works: %s", got.stderr)

	// Compact of a file this user may write, in a directory it may not.
	require.NoError(t, os.Mkdir(c.path("shut"), 0o755))
	got = c.run("", "--db", "shut/tokens.db", "issue", "--subject", "a")
	require.Equal(t, exitOK, got.code, got.stderr)
	require.NoError(t, os.Chmod(c.path("shut/tokens.db"), 0o666))
	require.NoError(t, os.Chmod(c.path("shut"), 0o555))
	got = o.run("", "--db", "shut/tokens.db", "compact")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: cannot compact shut/tokens.db: permission denied: compact writes its new copy in shut, and this user may not create files there\n", got.stderr)

	// A backup into a directory this user may not write.
	got = o.run("", "--db", "tokens.db", "backup", "locked/b.db")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: cannot write the backup in locked: permission denied (the directory is not writable by this user)\n", got.stderr)
}

// TestCLI_RevokeWithoutTokenIsUsage: nothing to revoke is a usage error.
func TestCLI_RevokeWithoutTokenIsUsage(t *testing.T) {
	c := newCLI(t)
	c.issue("alice")
	for _, args := range [][]string{{"revoke"}, {"revoke", "-"}, {"validate"}, {"inspect", "-"}, {"rotate"}} {
		got := c.run("", append([]string{"--db", "tokens.db"}, args...)...)
		assert.Equal(t, exitUsage, got.code, args)
		assert.Contains(t, got.stderr, "no token given: write it on the first line of stdin", args)
	}
}

// TestCLI_RevokeMissingOK: "make sure it is revoked" succeeds twice.
func TestCLI_RevokeMissingOK(t *testing.T) {
	c := newCLI(t)
	token := c.issue("alice")
	got := c.run("", "--db", "tokens.db", "list", "--json")
	id := decodeLines[infoJSON](t, got.stdout)[0].ID

	got = c.run(token+"\n", "--db", "tokens.db", "revoke", "--missing-ok")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, "revoked 1 token\n", got.stdout)

	got = c.run(token+"\n", "--db", "tokens.db", "revoke", "--missing-ok")
	assert.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, "revoked 0 tokens\n", got.stdout)
	got = c.run("", "--db", "tokens.db", "revoke", "--missing-ok", "--id", id, "--json")
	assert.Equal(t, exitOK, got.code, got.stderr)
	assert.JSONEq(t, `{"revoked": 0}`, got.stdout)

	// Without it, still an error that names the way out.
	got = c.run(token+"\n", "--db", "tokens.db", "revoke")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "--missing-ok accepts that")
	got = c.run("", "--db", "tokens.db", "revoke", "--id", id)
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "--missing-ok accepts that")

	// A malformed token is not "missing".
	got = c.run("tks_nope\n", "--db", "tokens.db", "revoke", "--missing-ok")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "malformed")
}

// TestCLI_StatsInlineBuckets: buckets bbolt keeps inline hold keys but no
// pages; stats says so instead of "0 pages, 0 bytes".
func TestCLI_StatsInlineBuckets(t *testing.T) {
	c := newCLI(t)
	c.issue("alice")
	got := c.run("", "--db", "tokens.db", "stats")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Regexp(t, `(?m)^tokens +1 +1 +inline +-$`, got.stdout)
	assert.NotRegexp(t, `(?m)^tokens +1 +1 +0 +0$`, got.stdout)
	assert.Contains(t, got.stdout, "inline: small enough for bbolt to keep inside its parent's page")

	got = c.run("", "--db", "tokens.db", "stats", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var s statsJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &s))
	for _, b := range s.Bolt.Buckets {
		assert.True(t, b.Inline, b.Name)
		assert.Nil(t, b.InUse, b.Name)
	}

	// A bucket past one page is not inline: confirm with bbolt's own view.
	many := newCLI(t)
	for range 60 {
		many.issue("alice", "--meta", "note="+strings.Repeat("x", 100))
	}
	got = many.run("", "--db", "tokens.db", "stats", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &s))
	bdb, err := bolt.Open(many.path("tokens.db"), 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer bdb.Close()
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
		for _, b := range s.Bolt.Buckets {
			inline := tx.Bucket([]byte(b.Name)).Stats().InlineBucketN == 1
			assert.Equal(t, inline, b.Inline, b.Name)
			assert.Equal(t, inline, b.InUse == nil, b.Name)
		}
		return nil
	}))
	assert.False(t, s.Bolt.Buckets[slices.IndexFunc(s.Bolt.Buckets, func(b bucketJSON) bool { return b.Name == "tokens" })].Inline)
}

// TestCLI_Rotate: the library's Rotate, from the shell.
func TestCLI_Rotate(t *testing.T) {
	c := newCLI(t)
	old := c.issue("alice", "--ttl", "30d", "--meta", "scope=read")

	got := c.run(old+"\n", "--db", "tokens.db", "rotate")
	require.Equal(t, exitOK, got.code, got.stderr)
	require.Regexp(t, tokenLine, got.stdout, "only the new token on stdout")
	fresh := strings.TrimSpace(got.stdout)
	assert.NotEqual(t, old, fresh)
	assert.Regexp(t, `^rotated token [0-9a-f-]{36}: new token [0-9a-f-]{36} to "alice" in family [0-9a-f-]{36}, absolute\(30d\), expires `, got.stderr)
	assertNoToken(t, got.stderr, old, fresh)

	got = c.run(fresh+"\n", "--db", "tokens.db", "inspect", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var info infoJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &info))
	assert.Equal(t, "alice", info.Subject)
	assert.Equal(t, "absolute(30d)", info.Policy)
	assert.Equal(t, map[string]string{"scope": "read"}, info.Metadata)

	got = c.run(fresh+"\n", "--db", "tokens.db", "rotate", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var r rotatedJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &r))
	assert.Equal(t, info.ID, r.Replaces)
	assert.Regexp(t, tokenLine, r.Token+"\n")

	// The old token presented again is reuse: the whole family goes.
	got = c.run(old+"\n", "--db", "tokens.db", "validate")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "invalid token: reused")
	got = c.run(r.Token+"\n", "--db", "tokens.db", "validate")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "invalid token: not found", "the latest token of the family is revoked")

	got = c.run(info.ID+"\n", "--db", "tokens.db", "rotate")
	assert.Equal(t, exitUsage, got.code)
	assert.Contains(t, got.stderr, "that is a token ID, not a token")
}

// TestCLI_TokenAsSubject: a token given to --subject (pasted into the
// wrong flag) is refused before the file is touched, never echoed, as the
// --url mode's client and the admin API refuse it; on a file, list printed
// `no live tokens for subject "tks_…"`, revoke said "revoked 0 tokens"
// and issue stored the token in the clear as a subject and printed it.
func TestCLI_TokenAsSubject(t *testing.T) {
	e := newEnv(t)
	token, _ := e.issue("alice")
	for _, args := range [][]string{
		{"list", "--subject", token},
		{"list", "--subject", token, "--json"},
		{"revoke", "--subject", token},
		{"issue", "--subject", token},
		{"issue", "--subject", token, "--json"},
	} {
		got := e.run("", args...)
		assert.Equal(t, exitUsage, got.code, "%v: %s", args[:2], got.stderr)
		assert.Contains(t, got.stderr, "a token, not a subject", args[:2])
		assertNoToken(t, got.stdout+got.stderr, token)
		if args[len(args)-1] == "--json" {
			assert.Equal(t, "invalid_subject", decodeError(t, got.stdout).Code)
		}
	}
	got := e.run("", "list")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, 1, strings.Count(got.stdout, "alice"), "nothing issued, nothing revoked")
	assertNoToken(t, got.stdout, token)
}
