package tokenstore_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
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

// TestDB_Revoke_ConcurrentRevokeSubject checks that once any call has seen
// a token deleted, Validate refuses it, though the deleting call (here a
// RevokeSubject in another goroutine) has not returned yet: a Revoke that
// answers ErrNotFound, or a List without the token, must be followed by a
// refusing Validate, even when the token was in memory.
func TestDB_Revoke_ConcurrentRevokeSubject(t *testing.T) {
	db := mustOpen(t, &tokenstore.Options{SweepInterval: -1})
	ctx := t.Context()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := db.RevokeSubject(ctx, "user")
			assert.NoError(t, err)
		}
	})
	defer wg.Wait()
	defer close(stop)

	var revokedElsewhere, listedGone int
	for range 200 {
		token, info, err := db.Issue(ctx, "user")
		require.NoError(t, err)
		if _, err := db.Validate(ctx, token); err != nil { // cache it
			require.ErrorIs(t, err, tokenstore.ErrNotFound)
		}
		list, err := db.List(ctx, "user")
		require.NoError(t, err)
		if !slices.ContainsFunc(list, func(in tokenstore.Info) bool { return in.ID == info.ID }) {
			listedGone++
			_, err := db.Validate(ctx, token)
			require.ErrorIs(t, err, tokenstore.ErrNotFound, "List no longer shows the token, Validate must refuse it")
		}
		revokeErr := db.Revoke(ctx, token)
		if revokeErr != nil {
			require.ErrorIs(t, revokeErr, tokenstore.ErrNotFound)
			revokedElsewhere++
		}
		_, err = db.Validate(ctx, token)
		require.ErrorIs(t, err, tokenstore.ErrNotFound, "Validate after Revoke returned %v", revokeErr)
	}
	t.Logf("of 200 tokens, %d were gone from List and %d revoked by the other goroutine first", listedGone, revokedElsewhere)
}
