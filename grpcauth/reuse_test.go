package grpcauth_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/grpcauth"
)

// reusingStore is a real store whose Validate refuses the tokens marked
// reused with an error that wraps tokenstore.ErrReused, as a store's own
// does after a rotated-away token's grace.
type reusingStore struct {
	tokenstore.Store
	mu     sync.Mutex
	reused map[string]bool
}

func (s *reusingStore) mark(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reused[token] = true
}

func (s *reusingStore) Validate(ctx context.Context, token string) (tokenstore.Info, error) {
	s.mu.Lock()
	reused := s.reused[token]
	s.mu.Unlock()
	if reused {
		return tokenstore.Info{}, fmt.Errorf("tokenstore: validate: family 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d: %w", tokenstore.ErrReused)
	}
	return s.Store.Validate(ctx, token)
}

// TestReused_Mapping: a reused token is refused like any invalid token,
// Unauthenticated with the fixed message, on unary calls and streams over
// a real loopback server; the server's error wraps ErrReused.
func TestReused_Mapping(t *testing.T) {
	var rs *reusingStore
	b := backend{"bbolt, reuse marked", func(t testing.TB, now func() time.Time) tokenstore.Store {
		rs = &reusingStore{Store: backends[0].open(t, now), reused: map[string]bool{}}
		return rs
	}}
	e := newEnv(t, b)
	token := e.issue("alice")
	other := e.issue("bob")
	rs.mark(token)

	_, err := e.unary(bearer(token))
	assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
	serverErr := e.lastErr()
	require.ErrorIs(t, serverErr, tokenstore.ErrReused)
	assert.Equal(t, codes.Unauthenticated, status.Code(serverErr))
	assert.Contains(t, e.logs.String(), "used again; its family is revoked", "the log says why")
	assert.NotContains(t, e.logs.String(), `"level":"ERROR"`, "a reused token is the client's, not a server failure")

	_, err = e.stream(bearer(token))
	assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
	assert.ErrorIs(t, e.lastErr(), tokenstore.ErrReused)

	resp, err := e.unary(bearer(other))
	require.NoError(t, err)
	assert.Equal(t, "bob", resp.GetUsername())
}
