package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEndToEnd builds the binary and runs issue → validate → revoke →
// validate on a temporary file, as an operator would.
func TestEndToEnd(t *testing.T) {
	bin := binary(t)
	db := filepath.Join(t.TempDir(), "tokens.db")

	run := func(stdin string, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, append([]string{"--db", db}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
			return exitErr.ExitCode(), o.String(), e.String()
		}
		require.NoError(t, err)
		return 0, o.String(), e.String()
	}

	code, stdout, stderr := run("", "issue", "--subject", "alice", "--ttl", "14d", "--meta", "scope=read")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, tokenLine, stdout)
	token := strings.TrimSpace(stdout)
	assertNoToken(t, stderr, token)
	assert.Regexp(t, `^created .*\nissued token [0-9a-f-]{36} to "alice", absolute\(14d\), expires `, stderr)

	code, stdout, stderr = run(token+"\n", "validate", "-")
	assert.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "subject    alice")
	assertNoToken(t, stdout+stderr, token)

	code, stdout, stderr = run(token+"\n", "revoke", "-")
	assert.Equal(t, 0, code, stderr)
	assert.Equal(t, "revoked 1 token\n", stdout)

	code, stdout, stderr = run(token+"\n", "validate", "-")
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout)
	assert.Equal(t, "tokenstore: invalid token: not found (never issued, revoked, or expired and swept)\n", stderr)

	code, _, stderr = run("", "issue")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--subject is required")
}
