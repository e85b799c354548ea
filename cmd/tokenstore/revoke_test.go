package main

import (
	"cmp"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func TestRevoke(t *testing.T) {
	tests := []struct {
		name       string
		stdin      string
		args       func(alice1, alice2 string, id uuid.UUID) []string
		wantCode   int
		wantStdout string
		wantStderr string
		wantGone   int // how many of alice's two tokens are gone afterwards
	}{
		{"token argument refused", "", func(a1, _ string, _ uuid.UUID) []string { return []string{a1} },
			exitUsage, "", "never from an argument", 0},
		{"token on stdin", "", func(_, _ string, _ uuid.UUID) []string { return []string{"-"} },
			exitOK, "revoked 1 token\n", "", 1},
		{"token on stdin without dash", "", func(_, _ string, _ uuid.UUID) []string { return nil },
			exitOK, "revoked 1 token\n", "", 1},
		{"id", "", func(_, _ string, id uuid.UUID) []string { return []string{"--id", id.String()} },
			exitOK, "revoked 1 token\n", "", 1},
		{"subject", "", func(_, _ string, _ uuid.UUID) []string { return []string{"--subject", "alice"} },
			exitOK, "revoked 2 tokens\n", "", 2},
		{"subject without tokens", "", func(_, _ string, _ uuid.UUID) []string { return []string{"--subject", "carol"} },
			exitOK, "revoked 0 tokens\n", "", 0},
		{"json", "", func(_, _ string, _ uuid.UUID) []string { return []string{"--subject", "alice", "--json"} },
			exitOK, `{"revoked":2}` + "\n", "", 2},
		{"unknown id", "", func(_, _ string, _ uuid.UUID) []string { return []string{"--id", uuid.NewString()} },
			exitFailed, "", "no token with ID", 0},
		{"malformed token", "tks_nope\n", func(_, _ string, _ uuid.UUID) []string { return []string{"-"} },
			exitFailed, "", "invalid token: malformed", 0},
		{"id given as token", "ID", func(_, _ string, id uuid.UUID) []string { return []string{"-"} },
			exitUsage, "", "that is a token ID, not a token: use revoke --id", 0},
		{"not a UUID", "", func(_, _ string, _ uuid.UUID) []string { return []string{"--id", "x"} },
			exitUsage, "", `"x" is not one`, 0},
		{"token and id", "", func(_, _ string, id uuid.UUID) []string { return []string{"-", "--id", id.String()} },
			exitUsage, "", "give one of a token on stdin (-), --id, --subject or --family", 0},
		{"id and subject", "", func(_, _ string, id uuid.UUID) []string { return []string{"--id", id.String(), "--subject", "alice"} },
			exitUsage, "", "give one of a token on stdin (-), --id, --subject or --family", 0},
		{"bad subject", "", func(_, _ string, _ uuid.UUID) []string { return []string{"--subject", ""} },
			exitUsage, "", "tokenstore: invalid subject: empty (--subject takes 1 to 255 bytes", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			alice1, info := e.issue("alice")
			alice2, _ := e.issue("alice")
			bob, _ := e.issue("bob")
			stdin := cmp.Or(tt.stdin, alice1+"\n")
			if tt.stdin == "ID" {
				stdin = info.ID.String() + "\n"
			}
			got := e.run(stdin, append([]string{"revoke"}, tt.args(alice1, alice2, info.ID)...)...)
			assert.Equal(t, tt.wantCode, got.code, got.stderr)
			assert.Equal(t, tt.wantStdout, got.stdout)
			assert.Contains(t, got.stderr, tt.wantStderr)
			assertNoToken(t, got.stdout+got.stderr, alice1, alice2, bob)

			gone := 0
			for _, tok := range []string{alice1, alice2} {
				if _, err := e.lookup(tok); err != nil {
					require.ErrorIs(t, err, tokenstore.ErrNotFound)
					gone++
				}
			}
			assert.Equal(t, tt.wantGone, gone)
			_, err := e.lookup(bob)
			assert.NoError(t, err, "another subject's token is untouched")
		})
	}
}

func TestRevoke_Twice(t *testing.T) {
	e := newEnv(t)
	token, _ := e.issue("alice")
	require.Equal(t, exitOK, e.run(token, "revoke").code)
	got := e.run(token, "revoke")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "invalid token: not found")
}
