package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
