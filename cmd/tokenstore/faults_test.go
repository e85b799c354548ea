package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// Issue 12, kind 4: the CLI acts on the file the operator named, as it is,
// and names the real cause.

func TestCLI_DirectoryIsNotDamaged(t *testing.T) {
	e := newEnv(t)
	e.db = t.TempDir()
	for _, cmd := range [][]string{{"list", "--subject", "alice"}, {"sweep"}, {"compact"}, {"check"}} {
		got := e.run("", cmd...)
		assert.Equal(t, exitFailed, got.code, "%v: %s", cmd, got.stderr)
		assert.Contains(t, got.stderr, "is a directory", "%v", cmd)
		assert.NotContains(t, got.stderr, "damaged", "%v", cmd)
	}
}

func TestCLI_CompactThroughSymlink(t *testing.T) {
	e := newEnv(t)
	e.issue("alice")
	link := filepath.Join(t.TempDir(), "link.db")
	require.NoError(t, os.Symlink(e.db, link))
	real := e.db
	e.db = link
	got := e.run("", "compact")
	require.Equal(t, exitOK, got.code, got.stderr)
	lst, err := os.Lstat(link)
	require.NoError(t, err)
	assert.Equal(t, fs.ModeSymlink, lst.Mode().Type(), "the link is still a link")
	e.db = real
	db := e.open()
	assert.EqualValues(t, 1, db.Stats().Tokens)
}

// TestCLI_PrefixFromTheFile: the CLI's hint about a token's prefix is the
// one the file records, and another --prefix is refused.
func TestCLI_PrefixFromTheFile(t *testing.T) {
	e := newEnv(t)
	db, err := tokenstore.Open(e.db, &tokenstore.Options{Prefix: "myapp", SweepInterval: -1, Now: func() time.Time { return e.now }})
	require.NoError(t, err)
	token, _, err := db.Issue(context.Background(), "alice")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	got := e.run(token+"\n", "validate")
	require.Equal(t, exitOK, got.code, "no --prefix: the file's: %s", got.stderr)
	got = e.run("tks_"+token[len("myapp_"):]+"\n", "validate")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, `this file's tokens start with "myapp_"`)
	got = e.run("", "--prefix", "tks", "list", "--subject", "alice")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, `records the token prefix "myapp": --prefix tks does not match it`)
}

// TestCLI_PolicyAsStored: the CLI refuses what the library refuses, with
// the reason, and reports an accepted policy exactly as the library does.
func TestCLI_PolicyAsStored(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		why  string
	}{
		{[]string{"--idle", "1h", "--max", "500us"}, "--max 500µs is not longer than --idle 1h"},
		{[]string{"--idle", "2h", "--max", "1h"}, "--max 1h is not longer than --idle 2h"},
		{[]string{"--idle", "1500us"}, "not a whole number of milliseconds"},
		{[]string{"--ttl", "1500us"}, "not a whole number of milliseconds"},
	} {
		got := e.run("", append([]string{"issue", "--subject", "alice"}, tc.args...)...)
		assert.NotEqual(t, exitOK, got.code, "%v", tc.args)
		assert.Contains(t, got.stderr, tc.why, "%v", tc.args)
	}
	p := tokenstore.Sliding(time.Hour, 90*time.Minute+time.Millisecond)
	token, info := e.issue("alice", tokenstore.WithPolicy(p))
	require.Equal(t, p, info.Policy)
	const shown = "sliding(idle=1h, max=1h30m0.001s)" // the CLI writes days and drops zero units
	got := e.run(token, "inspect", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, `"policy":"`+shown+`"`)
	got = e.run("", "list", "--subject", "alice", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, `"policy":"`+shown+`"`)
	got = e.run(token, "inspect")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, shown)
}
