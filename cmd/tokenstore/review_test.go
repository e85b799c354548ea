package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/tokenstore/tokenstore"
)

// Problems a review found by using the built binary as an operator would.

// TestCLI_NoTokenInErrors: a token given where something else is expected
// (--id, a command name, --meta, --db) is never repeated in the error, on
// stderr or in the --json object: terminals are recorded, CI logs are kept,
// and stderr goes to log collectors. Mistyped and truncated tokens too.
func TestCLI_NoTokenInErrors(t *testing.T) {
	c := newCLI(t)
	token := c.issue("alice")
	mistyped := token[:20] + "X" + token[21:]
	for _, tc := range []struct {
		args []string
		why  string // what the message must still say
	}{
		{[]string{"--db", "tokens.db", "revoke", "--id", token}, "--id takes a token ID"},
		{[]string{"--db", "tokens.db", "revoke", "--id=" + mistyped}, "--id takes a token ID"},
		{[]string{"--db", "tokens.db", "inspect", "--id", token}, "--id takes a token ID"},
		{[]string{"--db", "tokens.db", "inspect", "--id", token[4:]}, "--id takes a token ID"},
		{[]string{token}, "unknown command"},
		{[]string{"--db", "tokens.db", "issue", "--subject", "bob", "--meta", token}, "want key=value"},
		{[]string{"--db", token, "list"}, "does not exist"},
	} {
		for _, asJSON := range []bool{false, true} {
			args := tc.args
			if asJSON {
				args = append(args[:len(args):len(args)], "--json")
			}
			got := c.run("", args...)
			assert.NotEqual(t, exitOK, got.code, "%v", args)
			assert.Contains(t, got.stderr, tc.why, "%v", args)
			assertNoToken(t, got.stdout+got.stderr, token, mistyped, token[4:])
			assert.NotContains(t, got.stdout+got.stderr, token[4:30], "%v: part of a token was printed", args)
		}
	}
	// What is not a token is still named, so the operator sees the typo.
	got := c.run("", "--db", "tokens.db", "revoke", "--id", "0199a3c4-5e6f")
	assert.Equal(t, exitUsage, got.code)
	assert.Contains(t, got.stderr, `"0199a3c4-5e6f"`)
	got = c.run("", "lsit")
	assert.Contains(t, got.stderr, `unknown command "lsit"`)
}

// TestCLI_BackupThroughSymlink: backup --force to a path that is a
// symbolic link replaces the file the link points at and keeps the link,
// as DB.BackupFile and compact do (issue 12, kind 4); it used to replace
// the link with a new file, leaving the file it pointed at stale. A link
// to nothing is named as such.
func TestCLI_BackupThroughSymlink(t *testing.T) {
	c := newCLI(t)
	token := c.issue("alice")
	require.NoError(t, os.Mkdir(c.path("kept"), 0o755))
	require.NoError(t, os.WriteFile(c.path("kept/latest.db"), []byte("an older backup"), 0o600))
	require.NoError(t, os.Symlink("kept/latest.db", c.path("latest.db")))

	got := c.run("", "--db", "tokens.db", "backup", "latest.db")
	assert.Equal(t, exitFailed, got.code, "no --force: %s", got.stderr)
	got = c.run("", "--db", "tokens.db", "backup", "latest.db", "--force", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, `"file":"kept/latest.db"`)
	lst, err := os.Lstat(c.path("latest.db"))
	require.NoError(t, err)
	assert.Equal(t, fs.ModeSymlink, lst.Mode().Type(), "the link is still a link")
	assert.Equal(t, exitOK, c.run(token+"\n", "--db", "kept/latest.db", "inspect").code, "the file it points at holds the backup")

	require.NoError(t, os.Symlink("kept/nothing.db", c.path("dangling.db")))
	got = c.run("", "--db", "tokens.db", "backup", "dangling.db", "--force")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "symbolic link to kept/nothing.db, which does not exist")
}

// TestCLI_FIFOIsNotEmpty: the read-only commands called a FIFO "empty: not
// a tokenstore file yet"; it is not a regular file, as the writing
// commands already said.
func TestCLI_FIFOIsNotEmpty(t *testing.T) {
	c := newCLI(t)
	require.NoError(t, syscall.Mkfifo(c.path("fifo.db"), 0o600))
	for _, cmd := range [][]string{{"list"}, {"check"}, {"stats"}, {"backup", "b.db"}, {"issue", "--subject", "a"}} {
		got := c.run("", append([]string{"--db", "fifo.db"}, cmd...)...)
		assert.Equal(t, exitFailed, got.code, "%v: %s", cmd, got.stderr)
		assert.Contains(t, got.stderr, "not a regular file", "%v", cmd)
		assert.NotContains(t, got.stderr, "empty", "%v", cmd)
	}
}

// TestCLI_JSONCodesForEveryCause: each cause the library names with a
// sentinel has its own code in the --json error object, so that a script
// need not parse the message ("failed" is for what has none).
func TestCLI_JSONCodesForEveryCause(t *testing.T) {
	c := newCLI(t)
	token := c.issue("alice")
	require.NoError(t, os.Mkdir(c.path("adir"), 0o755))
	require.NoError(t, syscall.Mkfifo(c.path("fifo.db"), 0o600))
	for _, tc := range []struct {
		args     []string
		stdin    string
		code     string
		exitCode int
	}{
		{[]string{"--db", "tokens.db", "--prefix", "other", "list"}, "", "prefix_mismatch", exitFailed},
		{[]string{"--db", "adir", "list"}, "", "is_directory", exitFailed},
		{[]string{"--db", "fifo.db", "issue", "--subject", "a"}, "", "not_regular_file", exitFailed},
		{[]string{"--db", "tokens.db", "validate", "--scope", "admin"}, token + "\n", "insufficient_scope", exitFailed},
		{[]string{"--db", "tokens.db", "issue", "--subject", "a", "--scope", "a b"}, "", "invalid_scope", exitUsage},
	} {
		got := c.run(tc.stdin, append(tc.args, "--json")...)
		assert.Equal(t, tc.exitCode, got.code, "%v: %s", tc.args, got.stderr)
		assert.Equal(t, tc.code, decodeError(t, got.stdout).Code, "%v", tc.args)
	}
}

// TestCLI_DamagedRecordCostsOnlyItself: the library's passes do their work
// on every other record and report the damaged one (issue 12, kind 3), but
// list and expiring printed nothing at all (list's rows stayed in its
// buffer), and sweep said it "stopped" where it had deleted every other
// expired token. Now the operator sees every readable token, then the
// error naming the damaged one, and exit 1.
func TestCLI_DamagedRecordCostsOnlyItself(t *testing.T) {
	c := newCLI(t)
	// Issued two hours ago: alice's expire within the hour, bob's expired
	// an hour ago, on the real clock the binary reads.
	past := time.Now().Add(-2 * time.Hour)
	db, err := tokenstore.Open(c.path("tokens.db"), &tokenstore.Options{SweepInterval: -1, Now: func() time.Time { return past }})
	require.NoError(t, err)
	ctx := context.Background()
	var ids []uuid.UUID
	for range 4 {
		_, info, err := db.Issue(ctx, "alice", tokenstore.WithPolicy(tokenstore.Absolute(3*time.Hour)))
		require.NoError(t, err)
		ids = append(ids, info.ID)
	}
	var expired []uuid.UUID
	for range 3 {
		_, info, err := db.Issue(ctx, "bob", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
		require.NoError(t, err)
		expired = append(expired, info.ID)
	}
	require.NoError(t, db.Close())
	damaged, damagedExpired := ids[1], expired[1]
	bdb, err := bolt.Open(c.path("tokens.db"), 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		for _, id := range []uuid.UUID{damaged, damagedExpired} {
			// Schema 2: the ids entry starts with the first half of the
			// record's key.
			v := tx.Bucket([]byte("ids")).Get(id[:])
			require.NotNil(t, v)
			tokens := tx.Bucket([]byte("tokens"))
			h, r := tokens.Cursor().Seek(v[:16])
			require.True(t, h != nil && bytes.HasPrefix(h, v[:16]))
			rec := bytes.Clone(r)
			rec[len(rec)/2] ^= 0x10
			if err := tokens.Put(bytes.Clone(h), rec); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, bdb.Close())

	for _, tc := range []struct {
		args []string
		rows int // the readable tokens it shows
	}{
		{[]string{"list"}, 3},
		{[]string{"list", "--all"}, 5}, // bob's readable expired ones too
		{[]string{"list", "--subject", "alice"}, 3},
		{[]string{"expiring", "--within", "2h"}, 3},
	} {
		args := tc.args
		got := c.run("", append([]string{"--db", "tokens.db"}, args...)...)
		assert.Equal(t, exitFailed, got.code, "%v", args)
		assert.Contains(t, got.stderr, damaged.String(), "%v: the damaged one is named", args)
		for _, id := range []uuid.UUID{ids[0], ids[2], ids[3]} {
			assert.Contains(t, got.stdout, id.String(), "%v: every readable token is listed", args)
		}

		js := c.run("", append([]string{"--db", "tokens.db", "--json"}, args...)...)
		assert.Equal(t, exitFailed, js.code, "%v", args)
		lines := strings.Split(strings.TrimSpace(js.stdout), "\n")
		require.Len(t, lines, tc.rows+1, "%v: the tokens, then the error object: %s", args, js.stdout)
		for _, id := range []uuid.UUID{ids[0], ids[2], ids[3]} {
			assert.Contains(t, js.stdout, `"id":"`+id.String()+`"`, "%v", args)
		}
		e := decodeError(t, lines[tc.rows])
		assert.Equal(t, "corrupt", e.Code, "%v", args)
		assert.Contains(t, e.Message, damaged.String(), "%v", args)
	}

	// stats counts every other record, and says which it could not read.
	got := c.run("", "--db", "tokens.db", "stats")
	assert.Equal(t, exitFailed, got.code)
	assert.Regexp(t, `(?m)^tokens +5$`, got.stdout)
	assert.Contains(t, got.stderr, damaged.String())
	got = c.run("", "--db", "tokens.db", "stats", "--json")
	assert.Equal(t, exitFailed, got.code)
	require.Equal(t, 1, strings.Count(got.stdout, "\n"), "one JSON object: %s", got.stdout)
	var st statsJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &st))
	assert.Equal(t, 5, st.Tokens.Total)
	assert.Contains(t, st.Damaged, damaged.String())
	assert.Contains(t, st.Damaged, damagedExpired.String())

	got = c.run("", "--db", "tokens.db", "sweep")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, damagedExpired.String())
	assert.Contains(t, got.stderr, "2 other expired tokens deleted")
	assert.NotContains(t, got.stderr, "stopped")

	got = c.run("", "--db", "tokens.db", "revoke", "--subject", "alice")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, damaged.String())
	assert.Contains(t, got.stderr, "3 other tokens revoked")
	for _, id := range []uuid.UUID{damaged, damagedExpired} {
		got = c.run("", "--db", "tokens.db", "revoke", "--id", id.String())
		assert.Equal(t, exitOK, got.code, "revoke --id removes the damaged record: %s", got.stderr)
	}
	assert.Equal(t, exitOK, c.run("", "--db", "tokens.db", "check").code)
}

// TestRemote_WriteWithoutAnswer: when an application takes a revoke or an
// issue and does not answer within --timeout, the change may have been
// made all the same. The message said only "no answer ... is it
// overloaded?", and an operator who read it as "not revoked" (or "no token
// issued") could be wrong either way; it now says what to run to know.
func TestRemote_WriteWithoutAnswer(t *testing.T) {
	c := newCLI(t)
	require.NoError(t, os.WriteFile(c.path("admin.cred"), []byte("tks_"+strings.Repeat("A", 49)+"\n"), 0o600))
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	url := "http://" + silent.Addr().String() + "/admin"
	base := []string{"--url", url, "--credential-file", "admin.cred", "--timeout", "200ms"}
	for _, tc := range []struct {
		args []string
		hint string
	}{
		{[]string{"revoke", "--id", "01a229bd-ee4a-71b7-bcf1-afc09bcf8202"}, "may have revoked it: run the same revoke with --missing-ok"},
		{[]string{"revoke", "--subject", "alice"}, "may have revoked them: run the same revoke again"},
		{[]string{"issue", "--subject", "ci-bot"}, "may have issued it: list --subject shows"},
	} {
		got := c.run("", append(base, tc.args...)...)
		assert.Equal(t, exitFailed, got.code, "%v", tc.args)
		assert.Contains(t, got.stderr, "no answer from the application at "+url+" within 200ms", "%v", tc.args)
		assert.Contains(t, got.stderr, tc.hint, "%v", tc.args)
	}
	// A read needs no such hint.
	got := c.run("", append(base, "list", "--subject", "alice")...)
	assert.Equal(t, exitFailed, got.code)
	assert.NotContains(t, got.stderr, "may have")
}

// TestRemote_NoPasswordInURLError: a --url refused as not http(s) was
// repeated as given, a password in it too.
func TestRemote_NoPasswordInURLError(t *testing.T) {
	c := newCLI(t)
	for _, u := range []string{"ftp://ops:hunter2@127.0.0.1/admin", "http://ops:hunter2@127.0.0.1:bad/admin", "ops:hunter2@127.0.0.1/admin"} {
		got := c.run("", "--url", u, "list", "--subject", "alice", "--json")
		assert.Equal(t, exitUsage, got.code, "%s: %s", u, got.stderr)
		assert.Contains(t, got.stderr, "is not an http:// or https:// URL", u)
		assert.NotContains(t, got.stdout+got.stderr, "hunter2", u)
	}
}

// TestCLI_IssueZeroMax: --idle 1d --max 0 was refused as "the token would
// die 0s after issue ... or --ttl 0s for a fixed lifetime", advising a
// value that is itself refused.
func TestCLI_IssueZeroMax(t *testing.T) {
	c := newCLI(t)
	for _, max := range []string{"0", "0s", "0d"} {
		got := c.run("", "--db", "tokens.db", "issue", "--subject", "a", "--idle", "1d", "--max", max)
		assert.Equal(t, exitUsage, got.code, max)
		assert.Contains(t, got.stderr, "a cap must be positive", max)
		assert.NotContains(t, got.stderr, "--ttl 0s", max)
	}
}

// TestCLI_BackupOverNonRegularFile: backup --force to a FIFO replaced it
// with a regular file (its reader waited for ever); to a device node, as
// root, it would have replaced /dev/null. Only a regular file is
// replaced; a stream goes to stdout with -.
func TestCLI_BackupOverNonRegularFile(t *testing.T) {
	c := newCLI(t)
	c.issue("alice")
	require.NoError(t, syscall.Mkfifo(c.path("fifo"), 0o600))
	for _, args := range [][]string{{"backup", "fifo", "--force"}, {"backup", "fifo"}} {
		got := c.run("", append([]string{"--db", "tokens.db"}, args...)...)
		assert.Equal(t, exitFailed, got.code, "%v: %s", args, got.stderr)
		assert.Contains(t, got.stderr, "not a regular file", "%v", args)
		lst, err := os.Lstat(c.path("fifo"))
		require.NoError(t, err)
		assert.Equal(t, fs.ModeNamedPipe, lst.Mode().Type(), "%v: the FIFO is still a FIFO", args)
	}
}

// TestCLI_PrefixMismatchSpeaksOfTheFlag: the operator gave --prefix; the
// message spoke of Options.Prefix, which only a program sets.
func TestCLI_PrefixMismatchSpeaksOfTheFlag(t *testing.T) {
	c := newCLI(t)
	c.issue("alice")
	got := c.run("", "--db", "tokens.db", "--prefix", "myapp", "list", "--json")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: tokens.db records the token prefix \"tks\": --prefix myapp does not match it (leave --prefix out to use the file's)\n", got.stderr)
	assert.Equal(t, "prefix_mismatch", decodeError(t, got.stdout).Code)
}

// TestCLI_HangupLeavesNoTemporaryFile: SIGHUP (the terminal or the ssh
// session closed) during backup OUT killed the process and left a hidden
// partial copy (.OUT.tmp-N, tens of MB) beside OUT. SIGHUP now stops a
// command as SIGINT and SIGTERM do, and the copy is removed.
func TestCLI_HangupLeavesNoTemporaryFile(t *testing.T) {
	c := newCLI(t)
	db, err := tokenstore.Open(c.path("tokens.db"), &tokenstore.Options{SweepInterval: -1})
	require.NoError(t, err)
	// A file large enough (about 60 MB) that the copy is seen under way.
	meta := map[string]string{"k": strings.Repeat("x", 3000)}
	for range 4 {
		reqs := make([]tokenstore.IssueRequest, 5000)
		for i := range reqs {
			reqs[i] = tokenstore.IssueRequest{Subject: "s", Metadata: meta}
		}
		_, err := db.IssueBatch(t.Context(), reqs)
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
	require.NoError(t, os.Mkdir(c.path("out"), 0o755))

	cmd := exec.Command(binary(t), "--db", "tokens.db", "backup", "out/b.db")
	cmd.Dir = c.dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	// Wait until the temporary copy exists, then hang up.
	for seen := false; !seen; {
		entries, err := os.ReadDir(c.path("out"))
		require.NoError(t, err)
		for _, e := range entries {
			seen = seen || strings.Contains(e.Name(), ".tmp-")
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	err = cmd.Wait()
	entries, rerr := os.ReadDir(c.path("out"))
	require.NoError(t, rerr)
	if err == nil {
		// The copy finished before the signal arrived: then it is whole.
		require.Len(t, entries, 1, stderr.String())
		assert.Equal(t, "b.db", entries[0].Name())
		return
	}
	exit, ok := errors.AsType[*exec.ExitError](err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, exitFailed, exit.ExitCode(), "stopped, not killed by the signal: %s", stderr.String())
	assert.Contains(t, stderr.String(), "tokenstore: interrupted")
	assert.Empty(t, entries, "nothing left in the backup directory")
}

// TestCLI_CompactHintThroughSymlink: compact through a link writes its new
// copy beside the file the link points at, but the permission hint named
// the link's directory, which this user may well write.
func TestCLI_CompactHintThroughSymlink(t *testing.T) {
	c := newCLI(t)
	require.NoError(t, os.Mkdir(c.path("shut"), 0o755))
	got := c.run("", "--db", "shut/tokens.db", "issue", "--subject", "a")
	require.Equal(t, exitOK, got.code, got.stderr)
	require.NoError(t, os.Chmod(c.path("shut/tokens.db"), 0o666))
	require.NoError(t, os.Chmod(c.path("shut"), 0o555))
	require.NoError(t, os.Mkdir(c.path("links"), 0o777))
	require.NoError(t, os.Chmod(c.path("links"), 0o777)) // whatever the umask: this user may write here
	require.NoError(t, os.Symlink("../shut/tokens.db", c.path("links/tokens.db")))

	got = c.other().run("", "--db", "links/tokens.db", "compact")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: cannot compact links/tokens.db: permission denied: compact writes its new copy in shut, beside the file the link points at, and this user may not create files there\n", got.stderr)
}
