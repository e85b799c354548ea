package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func TestValidateInspect(t *testing.T) {
	for _, cmd := range []string{"validate", "inspect"} {
		t.Run(cmd, func(t *testing.T) {
			e := newEnv(t)
			token, info := e.issue("alice", tokenstore.WithPolicy(tokenstore.Absolute(30*day)),
				tokenstore.WithMetadata(map[string]string{"scope": "read"}))
			revoked, _ := e.issue("alice")
			db := e.open()
			require.NoError(t, db.Revoke(context.Background(), revoked))
			require.NoError(t, db.Close())

			tests := []struct {
				name       string
				stdin      string
				args       []string
				at         time.Duration // after t0
				wantCode   int
				wantStdout []string
				wantStderr string
			}{
				{"stdin", token + "\n", nil, time.Hour, exitOK, []string{"id         " + info.ID.String(), "subject    alice", "expires    2030-02-01T03:04:05Z (in 29d23h)", "policy     absolute(30d)", "scopes     read\n"}, ""},
				// ps shows argv to every user: refused, never repeated.
				{"argument refused", "", []string{token}, 0, exitUsage, nil, "never from an argument"},
				{"dash reads stdin", token + "\n", []string{"-"}, 0, exitOK, []string{"subject    alice"}, ""},
				{"no argument reads stdin", "  " + token + "  \r\n", nil, 0, exitOK, []string{"subject    alice"}, ""},
				{"only the first line", token + "\nsomething else\n", nil, 0, exitOK, []string{"subject    alice"}, ""},
				{"empty stdin", "", nil, 0, exitUsage, nil, "no token given"},
				{"blank stdin", "\n\n", []string{"-"}, 0, exitUsage, nil, "no token given"},
				{"malformed", "tks_short\n", []string{"-"}, 0, exitFailed, nil, "invalid token: malformed: length 9, want 53\n"},
				{"checksum", token[:len(token)-1] + flip(token[len(token)-1]) + "\n", []string{"-"}, 0, exitFailed, nil, "invalid token: malformed: checksum mismatch (mistyped or truncated?)\n"},
				{"other prefix", "ghp_" + token[4:] + "\n", []string{"-"}, 0, exitFailed, nil, "this file's tokens start with \"tks_\"\n"},
				{"huge stdin", strings.Repeat("x", 1<<20), nil, 0, exitFailed, nil, "invalid token: malformed: length 4096"},
				{"revoked", revoked, nil, 0, exitFailed, nil, "invalid token: not found (never issued, revoked, or expired and swept)\n"},
				{"expired", token, nil, 30 * day, exitFailed, nil, "tokenstore: invalid token: expired\n"},
				{"two arguments", "", []string{token, token}, 0, exitUsage, nil, "takes at most 1 argument"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					e.now = t0.Add(tt.at)
					got := e.run(tt.stdin, append([]string{cmd}, tt.args...)...)
					assert.Equal(t, tt.wantCode, got.code, got.stderr)
					for _, w := range tt.wantStdout {
						assert.Contains(t, got.stdout, w)
					}
					if tt.wantCode != exitOK {
						assert.Empty(t, got.stdout)
					}
					assert.Contains(t, got.stderr, tt.wantStderr)
					assertNoToken(t, got.stdout+got.stderr, token, revoked)
				})
			}
		})
	}
}

// flip returns a base62 character other than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestValidate_CountsAUseInspectDoesNot(t *testing.T) {
	e := newEnv(t)
	token, _ := e.issue("alice", tokenstore.WithPolicy(tokenstore.Sliding(day, 30*day)))

	e.now = t0.Add(12 * time.Hour)
	got := e.run(token, "validate")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, "last used  2030-01-02T15:04:05Z (now)")
	assert.Contains(t, got.stdout, "expires    2030-01-03T15:04:05Z (in 1d)")

	// The use was written: a day and a bit after issue the token still lives.
	e.now = t0.Add(30 * time.Hour)
	got = e.run(token, "inspect")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, "expires    2030-01-03T15:04:05Z (in 6h)")

	// inspect did not slide it: it dies a day after the validate.
	e.now = t0.Add(36 * time.Hour)
	got = e.run(token, "inspect")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "expired")
}

func TestInspect_ReadOnly(t *testing.T) {
	e := newEnv(t)
	token, _ := e.issue("alice")
	// Readers share the file: inspect runs while another reader holds it.
	ro, err := tokenstore.Open(e.db, &tokenstore.Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	got := e.run(token, "--timeout", "20ms", "inspect")
	assert.Equal(t, exitOK, got.code, got.stderr)
	// validate writes, so it cannot.
	got = e.run(token, "--timeout", "20ms", "validate")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "is held by another process")
}

func TestInspect_ID(t *testing.T) {
	e := newEnv(t)
	_, info := e.issue("alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	tests := []struct {
		name       string
		args       []string
		at         time.Duration
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"live", []string{"--id", info.ID.String()}, 0, exitOK, "subject    alice", ""},
		{"expired shows and fails", []string{"--id", info.ID.String()}, 2 * time.Hour, exitFailed, "subject    alice", "token " + info.ID.String() + " has expired (not swept yet)"},
		{"unknown", []string{"--id", uuid.NewString()}, 0, exitFailed, "", "no token with ID"},
		{"not a UUID", []string{"--id", "alice"}, 0, exitUsage, "", `"alice" is not one`},
		{"token and ID", []string{"--id", info.ID.String(), "tks_x"}, 0, exitUsage, "", "give a token or --id, not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.now = t0.Add(tt.at)
			got := e.run("", append([]string{"inspect"}, tt.args...)...)
			assert.Equal(t, tt.wantCode, got.code, got.stderr)
			assert.Contains(t, got.stdout, tt.wantStdout)
			assert.Contains(t, got.stderr, tt.wantStderr)
		})
	}
}

func TestValidate_JSON(t *testing.T) {
	e := newEnv(t)
	token, info := e.issue("alice", tokenstore.WithMetadata(map[string]string{"k": "v"}))
	e.now = t0.Add(time.Minute)
	got := e.run(token, "validate", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var v infoJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.Equal(t, infoJSON{
		ID:         info.ID.String(),
		FamilyID:   info.ID.String(),
		Subject:    "alice",
		CreatedAt:  t0,
		LastUsedAt: new(t0.Add(time.Minute)),
		ExpiresAt:  t0.Add(time.Minute + 14*day),
		Policy:     "sliding(idle=14d, max=30d)",
		Metadata:   map[string]string{"k": "v"},
	}, v)
	assertNoToken(t, got.stdout, token)
}

func TestValidate_MissingFile(t *testing.T) {
	e := newEnv(t)
	got := e.run("tks_x", "validate")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "does not exist")
	assert.False(t, e.exists())
}

func TestValidate_Scope(t *testing.T) {
	e := newEnv(t)
	token, _ := e.issue("alice", tokenstore.WithScopes("orders:read", "read"))
	plain, _ := e.issue("bob")

	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"has it", token, []string{"--scope", "read"}, exitOK, ""},
		{"has both", token, []string{"--scope", "read", "--scope", "orders:read"}, exitOK, ""},
		{"lacks one", token, []string{"--scope", "read", "--scope", "write"}, exitFailed,
			"insufficient scope: the token lacks write (it has: orders:read read)\n"},
		{"no scopes at all", plain, []string{"--scope", "read"}, exitFailed,
			"insufficient scope: the token lacks read (it has: none)\n"},
		{"case-sensitive", token, []string{"--scope", "READ"}, exitFailed, "insufficient scope: the token lacks READ"},
		{"invalid token first", "tks_short", []string{"--scope", "read"}, exitFailed, "invalid token: malformed"},
		{"not a scope", token, []string{"--scope", "a b"}, exitUsage, `tokenstore: --scope: invalid scope: "a b" holds a space`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.run(tt.stdin, append([]string{"validate"}, tt.args...)...)
			assert.Equal(t, tt.wantCode, got.code, got.stderr)
			if tt.wantCode == exitOK {
				assert.Contains(t, got.stdout, "scopes     orders:read read\n")
			} else {
				assert.Empty(t, got.stdout)
			}
			assert.Contains(t, got.stderr, tt.wantStderr)
			assertNoToken(t, got.stdout+got.stderr, token, plain)
		})
	}

	got := e.run(token, "validate", "--json", "--scope", "read")
	require.Equal(t, exitOK, got.code, got.stderr)
	rows := decodeLines[infoJSON](t, got.stdout)
	require.Len(t, rows, 1)
	assert.Equal(t, []string{"orders:read", "read"}, rows[0].Scopes)
	got = e.run(token, "inspect", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, `"scopes":["orders:read","read"]`)
}
