package tokenstore_test

// Tests of issue 12's fault kinds that are the bbolt store's own (the
// ones every backend shares are in tokenstoretest).

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// TestOpen_RefusesInexactPolicy: Options.Policy is checked like a
// per-token one, before the file is touched.
func TestOpen_RefusesInexactPolicy(t *testing.T) {
	for _, p := range []tokenstore.Policy{
		tokenstore.Sliding(time.Hour, 500*time.Microsecond),
		tokenstore.Sliding(2*time.Hour, time.Hour),
		tokenstore.Absolute(time.Duration(30)),
	} {
		path := filepath.Join(t.TempDir(), "tokens.db")
		_, err := tokenstore.Open(path, &tokenstore.Options{Policy: p})
		require.ErrorIs(t, err, tokenstore.ErrInvalidPolicy, "%s", p)
		require.Contains(t, err.Error(), "Options.Policy")
		_, err = os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "no file created")
	}
}
