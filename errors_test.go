package tokenstore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// TestErrors_OnePrefix: every error the store returns names its package
// once, whatever wrapped it on the way (issue 11: "tokenstore: close:
// tokenstore: file is corrupt…" was repaired by the CLI with ReplaceAll).
func TestErrors_OnePrefix(t *testing.T) {
	ctx := context.Background()
	clock := tokenstoretest.NewClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.db")
	db := mustOpenAt(t, path, &tokenstore.Options{Now: clock.Now, MaxTokensPerSubject: 1, SweepInterval: -1})
	token, _, err := db.Issue(ctx, "alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	require.NoError(t, err)
	other, _ := tokenstore.Format{}.Generate()

	garbage := filepath.Join(dir, "garbage.db")
	require.NoError(t, os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file ", 4096)), 0o600))

	errs := map[string]func() error{
		"validate malformed":   func() error { _, err := db.Validate(ctx, "tks_nope"); return err },
		"validate unknown":     func() error { _, err := db.Validate(ctx, other); return err },
		"revoke unknown":       func() error { return db.Revoke(ctx, other) },
		"revoke an unknown id": func() error { return db.RevokeID(ctx, uuid.New()) },
		"get an unknown id":    func() error { _, err := db.Get(ctx, uuid.New()); return err },
		"issue a bad subject":  func() error { _, _, err := db.Issue(ctx, ""); return err },
		"issue a bad policy": func() error {
			_, _, err := db.Issue(ctx, "bob", tokenstore.WithPolicy(tokenstore.Absolute(500*time.Microsecond)))
			return err
		},
		"issue too much metadata": func() error {
			_, _, err := db.Issue(ctx, "bob", tokenstore.WithMetadata(map[string]string{"k": strings.Repeat("v", 5000)}))
			return err
		},
		"issue a bad scope":  func() error { _, _, err := db.Issue(ctx, "bob", tokenstore.WithScopes("a b")); return err },
		"issue over a limit": func() error { _, _, err := db.Issue(ctx, "alice"); return err },
		"open a directory":   func() error { _, err := tokenstore.Open(dir, nil); return err },
		"open garbage":       func() error { _, err := tokenstore.Open(garbage, nil); return err },
		"open a bad policy": func() error {
			_, err := tokenstore.Open(filepath.Join(dir, "x.db"), &tokenstore.Options{Policy: tokenstore.Sliding(2*time.Hour, time.Hour)})
			return err
		},
		"open a bad prefix": func() error {
			_, err := tokenstore.Open(filepath.Join(dir, "y.db"), &tokenstore.Options{Prefix: "Bad_"})
			return err
		},
		"compact a directory": func() error { _, _, err := tokenstore.Compact(dir, nil); return err },
	}
	for name, f := range errs {
		err := f()
		require.Error(t, err, name)
		assert.Equal(t, 1, strings.Count(err.Error(), "tokenstore:"), "%s: %q", name, err)
	}
	clock.Advance(2 * time.Hour)
	_, err = db.Validate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrExpired)
	assert.Equal(t, 1, strings.Count(err.Error(), "tokenstore:"), "validate expired: %q", err)

	require.NoError(t, db.Close())
	for name, f := range map[string]func() error{
		"validate after close": func() error { _, err := db.Validate(ctx, token); return err },
		"issue after close":    func() error { _, _, err := db.Issue(ctx, "carol"); return err },
		"list after close":     func() error { _, err := db.List(ctx, "alice"); return err },
	} {
		err := f()
		require.ErrorIs(t, err, tokenstore.ErrClosed, name)
		assert.Equal(t, 1, strings.Count(err.Error(), "tokenstore:"), "%s: %q", name, err)
	}
}
