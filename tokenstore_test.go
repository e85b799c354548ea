package tokenstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"tokenstore"
	"tokenstore/tokenstoretest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	tokenstoretest.Run(t, func(t *testing.T, o tokenstore.Options) tokenstore.Store {
		return mustOpen(t, &o)
	})
}

// mustOpen opens a new store in t.TempDir() and closes it when the test ends.
func mustOpen(t testing.TB, o *tokenstore.Options) *tokenstore.DB {
	t.Helper()
	return mustOpenAt(t, t.TempDir()+"/tokens.db", o)
}

// mustOpenAt opens the store at path and closes it when the test ends.
func mustOpenAt(t testing.TB, path string, o *tokenstore.Options) *tokenstore.DB {
	t.Helper()
	db, err := tokenstore.Open(path, o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}
