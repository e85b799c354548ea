package tokenstore_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// TestOpen_ErrorSaysEachThingOnce: an error from opening the file names the
// path and the package once ("open x: open x: ..." was printed before).
func TestOpen_ErrorSaysEachThingOnce(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "plain")
	require.NoError(t, os.WriteFile(notDir, nil, 0o600))
	path := filepath.Join(notDir, "tokens.db") // its "directory" is a file

	_, err := tokenstore.Open(path, nil)
	require.ErrorIs(t, err, syscall.ENOTDIR)
	assert.Equal(t, "tokenstore: open "+path+": not a directory", err.Error())

	_, err = tokenstore.Open(filepath.Join(t.TempDir(), "x.db"), &tokenstore.Options{Policy: tokenstore.Absolute(time.Microsecond)})
	require.ErrorIs(t, err, tokenstore.ErrInvalidPolicy)
	assert.Equal(t, 1, strings.Count(err.Error(), "tokenstore:"), err.Error())
	assert.True(t, strings.HasPrefix(err.Error(), "tokenstore: Options.Policy: invalid expiry policy"), err.Error())
}
