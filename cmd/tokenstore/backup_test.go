package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// lookupIn looks token up in the file at path.
func lookupIn(t *testing.T, path, token string) error {
	t.Helper()
	db, err := tokenstore.Open(path, &tokenstore.Options{ReadOnly: true, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Lookup(context.Background(), token)
	return err
}

func TestBackup_File(t *testing.T) {
	e := newEnv(t)
	token, _ := e.issue("alice")
	out := filepath.Join(t.TempDir(), "backup.db")
	got := e.run("", "backup", out)
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Regexp(t, `^backed up .*tokens\.db to .*backup\.db \(\d+\.\d KiB\)\n$`, got.stdout)
	require.NoError(t, lookupIn(t, out, token))
	st, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// Not over an existing file without --force.
	got = e.run("", "backup", out)
	require.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: "+out+" already exists: not replaced (give --force to replace it, or name another file)\n", got.stderr)

	// Over it with --force, with --json.
	got = e.run("", "backup", out, "--force", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var v struct {
		File  string `json:"file"`
		Bytes int64  `json:"bytes"`
	}
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.Equal(t, out, v.File)
	assert.Equal(t, st.Size(), v.Bytes)
}

func TestBackup_Stdout(t *testing.T) {
	e := newEnv(t)
	token, _ := e.issue("alice")
	got := e.run("", "backup", "-")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Regexp(t, `^backed up .* to stdout \(`, got.stderr)
	out := filepath.Join(t.TempDir(), "copy.db")
	require.NoError(t, os.WriteFile(out, []byte(got.stdout), 0o600))
	require.NoError(t, lookupIn(t, out, token))
}

func TestBackup_Errors(t *testing.T) {
	e := newEnv(t)
	e.issue("alice")
	missing := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"no argument", nil, exitUsage, "backup takes 1 argument(s), got 0"},
		{"two arguments", []string{"a", "b"}, exitUsage, "got 2"},
		{"onto itself", []string{e.db}, exitUsage, "that is the token file itself"},
		{"json to stdout", []string{"-", "--json"}, exitUsage, "--json needs stdout"},
		{"no such directory", []string{filepath.Join(missing, "b.db")}, exitFailed, "directory " + missing + " does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.run("", append([]string{"backup"}, tt.args...)...)
			assert.Equal(t, tt.wantCode, got.code)
			if slices.Contains(tt.args, "--json") {
				assert.Equal(t, tt.wantCode, decodeError(t, got.stdout).ExitCode)
			} else {
				assert.Empty(t, got.stdout)
			}
			assert.Contains(t, got.stderr, tt.wantStderr)
		})
	}
}
