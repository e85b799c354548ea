package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

var tokenLine = regexp.MustCompile(`^tks_[0-9A-Za-z]{49}\n$`)

func TestIssue(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantPolicy tokenstore.Policy
		wantMeta   map[string]string
		wantStderr string
	}{
		{"default policy", []string{"--subject", "alice"}, tokenstore.Sliding(14*day, 30*day), nil,
			`issued token %s to "alice", sliding(idle=14d, max=30d), expires 2030-01-16T03:04:05Z (in 14d)`},
		{"absolute", []string{"--subject", "alice", "--ttl", "30d"}, tokenstore.Absolute(30 * day), nil,
			"absolute(30d), expires 2030-02-01T03:04:05Z (in 30d)"},
		{"sliding with cap", []string{"--subject", "alice", "--idle", "1d12h", "--max", "7d"}, tokenstore.Sliding(36*time.Hour, 7*day), nil,
			"sliding(idle=1d12h, max=7d), expires 2030-01-03T15:04:05Z (in 1d12h)"},
		{"sliding without cap", []string{"--subject", "alice", "--idle", "90m"}, tokenstore.Sliding(90*time.Minute, 0), nil,
			"sliding(idle=1h30m)"},
		{"metadata", []string{"--subject", "ci bot", "--meta", "scope=read,write", "--meta", "note=a=b", "--meta", "empty="},
			tokenstore.Sliding(14*day, 30*day), map[string]string{"scope": "read,write", "note": "a=b", "empty": ""}, `to "ci bot"`},
		{"scopes", []string{"--subject", "alice", "--scope", "write", "--scope", "orders:read", "--scope", "write", "--meta", "device=laptop"},
			tokenstore.Sliding(14*day, 30*day), map[string]string{"scope": "orders:read write", "device": "laptop"}, `to "alice"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			got := e.run("", append([]string{"issue"}, tt.args...)...)
			require.Equal(t, exitOK, got.code, got.stderr)
			require.Regexp(t, tokenLine, got.stdout, "only the token on stdout")
			token := strings.TrimSpace(got.stdout)
			assertNoToken(t, got.stderr, token)
			assert.Contains(t, got.stderr, "created "+e.db+"\n")

			info, err := e.lookup(token)
			require.NoError(t, err)
			assert.Equal(t, tt.wantPolicy, info.Policy)
			assert.Equal(t, tt.wantMeta, info.Metadata)
			assert.Equal(t, t0, info.CreatedAt.UTC())
			assert.Contains(t, got.stderr, strings.Replace(tt.wantStderr, "%s", info.ID.String(), 1))
		})
	}
}

func TestIssue_SecondTokenDoesNotSayCreated(t *testing.T) {
	e := newEnv(t)
	require.Equal(t, exitOK, e.run("", "issue", "--subject", "a").code)
	got := e.run("", "issue", "--subject", "a")
	require.Equal(t, exitOK, got.code)
	assert.NotContains(t, got.stderr, "created")
}

func TestIssue_JSON(t *testing.T) {
	e := newEnv(t)
	got := e.run("", "issue", "--subject", "alice", "--ttl", "1h", "--meta", "k=v", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var v struct {
		Token     string            `json:"token"`
		ID        string            `json:"id"`
		Subject   string            `json:"subject"`
		ExpiresAt time.Time         `json:"expires_at"`
		Expired   bool              `json:"expired"`
		Policy    string            `json:"policy"`
		Metadata  map[string]string `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.Regexp(t, tokenLine, v.Token+"\n")
	assert.Equal(t, "alice", v.Subject)
	assert.Equal(t, t0.Add(time.Hour), v.ExpiresAt)
	assert.False(t, v.Expired)
	p, err := tokenstore.ParsePolicy(v.Policy)
	require.NoError(t, err)
	assert.Equal(t, tokenstore.Absolute(time.Hour), p)
	assert.Equal(t, map[string]string{"k": "v"}, v.Metadata)
	info, err := e.lookup(v.Token)
	require.NoError(t, err)
	assert.Equal(t, v.ID, info.ID.String())
	assert.Equal(t, 1, strings.Count(got.stdout, "\n"), "one JSON object")
}

func TestIssue_Prefix(t *testing.T) {
	e := newEnv(t)
	got := e.run("", "--prefix", "myapp", "issue", "--subject", "alice")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Regexp(t, `^myapp_[0-9A-Za-z]{49}\n$`, got.stdout)
}

func TestIssue_UsageErrors(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no subject", nil, "--subject is required"},
		{"empty subject", []string{"--subject", ""}, "invalid subject: empty"},
		{"control character", []string{"--subject", "a\nb"}, "control character"},
		{"long subject", []string{"--subject", strings.Repeat("x", 256)}, "at most 255"},
		{"ttl and idle", []string{"--subject", "a", "--ttl", "1h", "--idle", "1h"}, "--ttl (absolute) excludes --idle and --max"},
		{"ttl and max", []string{"--subject", "a", "--ttl", "1h", "--max", "1h"}, "excludes"},
		{"max alone", []string{"--subject", "a", "--max", "30d"}, "give --idle too"},
		{"zero ttl", []string{"--subject", "a", "--ttl", "0"}, "--ttl 0s: a token must live at least 1ms; give a lifetime such as --ttl 30d"},
		{"negative ttl", []string{"--subject", "a", "--ttl", "-1h"}, "must not be negative"},
		{"bad duration", []string{"--subject", "a", "--idle", "1w"}, `invalid duration "1w"`},
		{"meta without =", []string{"--subject", "a", "--meta", "scope"}, "want key=value"},
		{"meta empty key", []string{"--subject", "a", "--meta", "=v"}, "empty key"},
		{"meta twice", []string{"--subject", "a", "--meta", "k=1", "--meta", "k=2"}, `key "k" given twice`},
		{"meta too large", []string{"--subject", "a", "--meta", "k=" + strings.Repeat("v", 5000)}, "metadata too large"},
		{"scope with a space", []string{"--subject", "a", "--scope", "read write"}, `tokenstore: --scope: invalid scope: "read write" holds a space`},
		{"empty scope", []string{"--subject", "a", "--scope", ""}, "tokenstore: --scope: invalid scope: empty"},
		{"scope and meta scope", []string{"--subject", "a", "--scope", "read", "--meta", "scope=write"}, "--scope and --meta scope=... both set the scopes"},
		{"meta scope not RFC 6749", []string{"--subject", "a", "--meta", "scope=read  write"}, "invalid scope: metadata \"scope\" must separate scopes by single spaces"},
		{"argument", []string{"--subject", "a", "extra"}, "issue takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			got := e.run("", append([]string{"issue"}, tt.args...)...)
			assert.Equal(t, exitUsage, got.code)
			assert.Empty(t, got.stdout)
			assert.Contains(t, got.stderr, tt.wantStderr)
			assert.Contains(t, got.stderr, "Run 'tokenstore issue --help' for usage.")
			assert.False(t, e.exists(), "a usage error must not create the file")
		})
	}
}
