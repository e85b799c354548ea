package grpcauth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/grpcauth"
)

// TestRotationReuse: a token rotated with a grace keeps working within it;
// presented after it, on the store's clock, it is refused as reuse, and
// its successor is refused too: the store revoked the family.
func TestRotationReuse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		old := e.issue("alice", tokenstore.WithPolicy(tokenstore.Sliding(time.Hour, 24*time.Hour)))
		next, _, err := e.store.Rotate(context.Background(), old, tokenstore.WithGrace(30*time.Second))
		require.NoError(t, err)
		e.remember(next)

		resp, err := e.unary(bearer(old))
		require.NoError(t, err, "within the grace the old token still works")
		assert.Equal(t, "alice", resp.GetUsername())

		e.clock.Advance(31 * time.Second)
		_, err = e.unary(bearer(old))
		assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
		assert.ErrorIs(t, e.lastErr(), tokenstore.ErrReused)

		_, err = e.unary(bearer(next))
		assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
		assert.ErrorIs(t, e.lastErr(), tokenstore.ErrNotFound, "the successor went with its family")
	})
}
