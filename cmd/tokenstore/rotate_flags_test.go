package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRotate_FlagErrors: a grace the library would refuse, and a --family
// that is not a family ID, are usage errors (exit 2) with codes of their
// own under --json, decided before the file is opened or changed.
func TestRotate_FlagErrors(t *testing.T) {
	e := newEnv(t)
	token, info := e.issue("alice")
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode string
		wantText string
	}{
		{"grace above MaxGrace", token, []string{"rotate", "--grace", "11m"}, "invalid_grace", "--grace 11m: a grace is at most 10m"},
		{"grace of days", token, []string{"rotate", "--grace", "1d"}, "invalid_grace", "--grace 1d: a grace is at most 10m"},
		{"negative grace", token, []string{"rotate", "--grace", "-1s"}, "usage", "must not be negative"},
		{"family not a UUID", "", []string{"revoke", "--family", "x"}, "usage", `--family takes a family ID, a UUID as list and inspect show it (such as 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d); "x" is not one`},
		{"family given a token", "", []string{"revoke", "--family", token}, "usage", "that looks like a token, not a family ID"},
		{"family and subject", "", []string{"revoke", "--family", info.ID.String(), "--subject", "alice"}, "usage", "give one of a token on stdin (-), --id, --subject or --family"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.run(tt.stdin, tt.args...)
			assert.Equal(t, exitUsage, got.code, got.stderr)
			assert.Contains(t, got.stderr, tt.wantText)
			assertNoToken(t, got.stdout+got.stderr, token)

			got = e.run(tt.stdin, append(tt.args, "--json")...)
			assert.Equal(t, exitUsage, got.code)
			b := decodeError(t, got.stdout)
			assert.Equal(t, tt.wantCode, b.Code)
			assert.Equal(t, exitUsage, b.ExitCode)
			assertNoToken(t, got.stdout+got.stderr, token)
		})
	}
	after, err := e.lookup(token)
	require.NoError(t, err, "the token is untouched")
	assert.Equal(t, info.ID, after.ID)
}
