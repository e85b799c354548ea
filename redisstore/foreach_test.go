package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// TestStore_ForEach: every token, expired ones not yet swept included, in
// deadline order, across more than one round trip; revoked ones are gone;
// fn's error stops it.
func TestStore_ForEach(t *testing.T) {
	s := newStore(t, nil)
	ctx := context.Background()
	const n = 1500 // more than one chunk
	want := map[uuid.UUID]bool{}
	var revoked uuid.UUID
	for i := range n {
		// Decreasing lifetimes: deadline order is the reverse of issue order.
		_, info, err := s.Issue(ctx, "sub", tokenstore.WithPolicy(tokenstore.Absolute(time.Duration(2*n-i)*time.Second)))
		require.NoError(t, err)
		want[info.ID] = true
		if i == 7 {
			revoked = info.ID
		}
	}
	require.NoError(t, s.RevokeID(ctx, revoked))
	delete(want, revoked)

	got := map[uuid.UUID]bool{}
	var last time.Time
	require.NoError(t, s.ForEach(ctx, func(info tokenstore.Info) error {
		assert.False(t, info.ExpiresAt.Before(last), "deadline order")
		last = info.ExpiresAt
		assert.False(t, got[info.ID], "seen twice")
		got[info.ID] = true
		return nil
	}))
	assert.Equal(t, want, got)

	stop := errors.New("stop")
	calls := 0
	err := s.ForEach(ctx, func(tokenstore.Info) error { calls++; return stop })
	assert.ErrorIs(t, err, stop)
	assert.Equal(t, 1, calls)

	require.NoError(t, s.Close())
	assert.ErrorIs(t, s.ForEach(ctx, func(tokenstore.Info) error { return nil }), tokenstore.ErrClosed)
}
