package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServer_CLI is issue 15's end-to-end test with the operator's tool:
// the example runs as a child process, a token leaks, the tokenstore
// command revokes it through the admin API (--url) while the application
// runs, the application refuses it on the next request, and after SIGTERM
// and a restart nothing is lost: the file, read by the same command with
// --db, lists what the running application listed, last uses included.
func TestServer_CLI(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the test builds the example and the command with the go command")
	dir := t.TempDir()
	server, cliBin := filepath.Join(dir, "server"), filepath.Join(dir, "tokenstore")
	for bin, pkg := range map[string]string{server: ".", cliBin: "../../cmd/tokenstore"} {
		out, err := exec.Command(goBin, "build", "-o", bin, pkg).CombinedOutput()
		require.NoError(t, err, "go build %s: %s", pkg, out)
	}
	users := []user{
		{Username: "alice", Password: hashWith(t, server, "alice's password"), Scope: "read"},
		{Username: "ops", Password: hashWith(t, server, "ops's password"), Scope: "tokenstore:admin"},
	}
	b, err := json.Marshal(users)
	require.NoError(t, err)
	usersFile, dbFile, cred := filepath.Join(dir, "users.json"), filepath.Join(dir, "tokens.db"), filepath.Join(dir, "admin-token")
	require.NoError(t, os.WriteFile(usersFile, b, 0o600))

	p := start(t, server, "-addr", "127.0.0.1:0", "-db", dbFile, "-users", usersFile)
	used := p.login("alice", "alice's password")
	leaked := p.login("alice", "alice's password")
	require.NoError(t, os.WriteFile(cred, []byte(p.login("ops", "ops's password")+"\n"), 0o600))
	require.Equal(t, http.StatusOK, p.call("GET", "/api/me", used, "").status)
	require.Equal(t, http.StatusOK, p.call("GET", "/api/me", leaked, "").status)

	// tokenstore runs the command against the running application, the
	// credential in a file: never in argv.
	tokenstore := func(stdin string, args ...string) cliResult {
		t.Helper()
		return runCLI(t, cliBin, stdin, append([]string{"--url", p.url + "/admin", "--credential-file", cred}, args...)...)
	}

	// The operator finds the leaked token (given on stdin, not argv) and
	// revokes it, the application still running.
	got := tokenstore(leaked+"\n", "inspect", "--json")
	require.Equal(t, 0, got.code, got.stderr)
	var leakedInfo struct {
		ID      string `json:"id"`
		Subject string `json:"subject"`
	}
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &leakedInfo))
	assert.Equal(t, "alice", leakedInfo.Subject)
	got = tokenstore(leaked+"\n", "revoke")
	require.Equal(t, 0, got.code, got.stderr)
	assert.Equal(t, "revoked 1 token\n", got.stdout)
	assert.Equal(t, http.StatusUnauthorized, p.call("GET", "/api/me", leaked, "").status, "refused on the next request")
	assert.Equal(t, http.StatusOK, p.call("GET", "/api/me", used, "").status, "the other token works")

	// A token for a script, issued and revoked by ID the same way.
	got = tokenstore("", "issue", "--subject", "ci-bot", "--ttl", "1d", "--json")
	require.Equal(t, 0, got.code, got.stderr)
	var bot struct {
		Token string `json:"token"`
		ID    string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &bot))
	assert.Equal(t, http.StatusOK, p.call("GET", "/api/me", bot.Token, "").status)
	got = tokenstore("", "revoke", "--id", bot.ID)
	require.Equal(t, 0, got.code, got.stderr)
	assert.Equal(t, http.StatusUnauthorized, p.call("GET", "/api/me", bot.Token, "").status)

	got = tokenstore("", "list", "--subject", "alice", "--json")
	require.Equal(t, 0, got.code, got.stderr)
	running := got.stdout
	require.Equal(t, 1, strings.Count(running, "\n"), "alice's one live token: %s", running)
	assert.NotContains(t, running, leakedInfo.ID)
	assert.NotContains(t, running, `"last_used_at":null`, "the use of a moment ago is seen while running")

	// The file is the running application's: --db says so, and names --url.
	got = runCLI(t, cliBin, "", "--db", dbFile, "--timeout", "100ms", "list", "--subject", "alice")
	assert.Equal(t, 1, got.code)
	assert.Contains(t, got.stderr, "with --url URL")

	p.stop(syscall.SIGTERM)

	// Stopped: the file says what the running application said, to the
	// byte, last use included (written by Close at SIGTERM).
	got = runCLI(t, cliBin, "", "--db", dbFile, "list", "--subject", "alice", "--json")
	require.Equal(t, 0, got.code, got.stderr)
	assert.Equal(t, running, got.stdout, "nothing lost at SIGTERM")
	got = runCLI(t, cliBin, "", "--db", dbFile, "inspect", "--id", leakedInfo.ID)
	assert.Equal(t, 1, got.code, "the leaked token stays revoked")
	assert.Contains(t, got.stderr, "no token with ID "+leakedInfo.ID)

	// Restarted on the same file: still refused, and the CLI works on the
	// new process.
	p = start(t, server, "-addr", "127.0.0.1:0", "-db", dbFile, "-users", usersFile)
	assert.Equal(t, http.StatusUnauthorized, p.call("GET", "/api/me", leaked, "").status)
	assert.Equal(t, http.StatusOK, p.call("GET", "/api/me", used, "").status)
	got = tokenstore(leaked+"\n", "inspect")
	assert.Equal(t, 1, got.code)
	assert.Equal(t, "tokenstore: invalid token: not found (never issued, revoked, or expired and swept)\n", got.stderr)
	got = tokenstore("", "stats", "--json")
	require.Equal(t, 0, got.code, got.stderr)
	var stats struct {
		Tokens struct {
			Total int `json:"total"`
		} `json:"tokens"`
	}
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &stats))
	assert.Equal(t, 2, stats.Tokens.Total, "alice's token and the admin's")
	p.stop(syscall.SIGTERM)

	for _, tok := range []string{used, leaked, bot.Token} {
		assert.NotContains(t, p.logs(), tok, "a token in the log")
	}
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs the tokenstore command, with no TOKENSTORE_ variable of the
// test's environment.
func runCLI(t *testing.T, bin, stdin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOKENSTORE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
		return cliResult{exitErr.ExitCode(), o.String(), e.String()}
	}
	require.NoError(t, err)
	return cliResult{0, o.String(), e.String()}
}
