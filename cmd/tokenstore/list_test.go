package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func TestList(t *testing.T) {
	e := newEnv(t)
	var tokens []string
	a1, i1 := e.issue("alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	e.now = t0.Add(time.Minute)
	a2, i2 := e.issue("alice", tokenstore.WithMetadata(map[string]string{"device": "my laptop", "scope": "read"}))
	b1, i3 := e.issue("bob", tokenstore.WithPolicy(tokenstore.Sliding(day, 0)))
	tokens = append(tokens, a1, a2, b1)
	e.now = t0.Add(2 * time.Hour) // a1 has expired

	tests := []struct {
		name      string
		args      []string
		wantIDs   []string
		wantLines []string
	}{
		{"all live", nil, []string{i2.ID.String(), i3.ID.String()}, nil},
		{"with expired", []string{"--all"}, []string{i1.ID.String(), i2.ID.String(), i3.ID.String()},
			[]string{"2030-01-02T04:04:05Z (expired)"}},
		{"subject", []string{"--subject", "alice"}, []string{i2.ID.String()}, nil},
		{"subject with expired", []string{"--subject", "alice", "--all"}, []string{i1.ID.String(), i2.ID.String()}, nil},
		{"unknown subject", []string{"--subject", "carol"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.run("", append([]string{"list"}, tt.args...)...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assertNoToken(t, got.stdout+got.stderr, tokens...)
			lines := strings.Split(strings.TrimSuffix(got.stdout, "\n"), "\n")
			if len(tt.wantIDs) == 0 {
				assert.Empty(t, got.stdout)
				assert.Contains(t, got.stderr, "no ")
				return
			}
			require.Len(t, lines, 1+len(tt.wantIDs), got.stdout)
			assert.Regexp(t, `^ID +FAMILY +SUBJECT +CREATED +LAST USED +EXPIRES +POLICY +METADATA$`, lines[0])
			for i, id := range tt.wantIDs {
				assert.True(t, strings.HasPrefix(lines[i+1], id+"  "), "row %d: %s", i, lines[i+1])
			}
			for _, w := range tt.wantLines {
				assert.Contains(t, got.stdout, w)
			}

			// The same with --json: one object per token.
			got = e.run("", append([]string{"list", "--json"}, tt.args...)...)
			require.Equal(t, exitOK, got.code, got.stderr)
			rows := decodeLines[infoJSON](t, got.stdout)
			require.Len(t, rows, len(tt.wantIDs))
			for i, id := range tt.wantIDs {
				assert.Equal(t, id, rows[i].ID)
				assert.Equal(t, id == i1.ID.String(), rows[i].Expired)
			}
			assert.Empty(t, got.stderr)
		})
	}
}

func TestList_Row(t *testing.T) {
	e := newEnv(t)
	_, info := e.issue("ci bot", tokenstore.WithPolicy(tokenstore.Sliding(day, 30*day)),
		tokenstore.WithMetadata(map[string]string{"device": "my laptop"}), tokenstore.WithScopes("write", "read"))
	e.now = t0.Add(time.Hour)
	got := e.run("", "list")
	require.Equal(t, exitOK, got.code, got.stderr)
	fields := regexpSplit(strings.Split(got.stdout, "\n")[1])
	assert.Equal(t, []string{info.ID.String(), info.ID.String(), `"ci bot"`, "2030-01-02T03:04:05Z", "never", "2030-01-03T03:04:05Z",
		"sliding(idle=1d, max=30d)", `device="my laptop", scope="read write"`}, fields)

	got = e.run("", "list", "--json", "--subject", "ci bot")
	require.Equal(t, exitOK, got.code, got.stderr)
	rows := decodeLines[infoJSON](t, got.stdout)
	require.Len(t, rows, 1)
	assert.Equal(t, []string{"read", "write"}, rows[0].Scopes)
	assert.Equal(t, map[string]string{"device": "my laptop", "scope": "read write"}, rows[0].Metadata, "metadata as stored")
}

// regexpSplit splits a table row on runs of two or more spaces.
func regexpSplit(row string) []string {
	var out []string
	for _, f := range strings.Split(row, "  ") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func TestList_StreamsManyTokens(t *testing.T) {
	e := newEnv(t)
	const n = 2*listChunk + 17
	reqs := make([]tokenstore.IssueRequest, n)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: fmt.Sprintf("user-%04d", i)}
	}
	db := e.open()
	_, err := db.IssueBatch(context.Background(), reqs)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	got := e.run("", "list")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, n+1, strings.Count(got.stdout, "\n"))
	got = e.run("", "list", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Len(t, decodeLines[infoJSON](t, got.stdout), n)
}

func TestList_UsageErrors(t *testing.T) {
	e := newEnv(t)
	e.issue("alice")
	for _, args := range [][]string{{"list", "alice"}, {"list", "--subject", ""}, {"list", "--json=maybe"}} {
		got := e.run("", args...)
		assert.Equal(t, exitUsage, got.code, args)
		assert.Empty(t, got.stdout)
	}
}
