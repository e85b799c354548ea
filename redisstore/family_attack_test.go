package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
)

// TestFamily_FullRedisSuccessorUseEndsGrace: on a full Redis (noeviction
// at maxmemory), the successor's first use still ends its predecessor's
// grace, for Validate and Lookup alike: ending it only deletes a field,
// which Redis allows when full. Otherwise a thief holding the old token
// keeps a working token for the rest of the grace after the rightful
// client has moved on, and its presentation is not caught as a reuse.
func TestFamily_FullRedisSuccessorUseEndsGrace(t *testing.T) {
	srv := ownRedis(t, "--maxmemory-policy", "noeviction")
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	clk := newClock()
	s := storeOn(t, srv.Addr, &redisstore.Options{Now: clk.Now, TouchInterval: time.Minute, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})

	// Validate first while the store still tries use writes, then
	// Validate and Lookup after a refused use write made it stop trying
	// them for a while (writesRefused): ending a grace must not wait.
	uses := []string{"Validate", "Validate", "Lookup"}
	type pairT struct{ a, b string }
	pairs := make([]pairT, len(uses))
	for i := range uses {
		a, _, err := s.Issue(ctx, fmt.Sprintf("victim-%d", i))
		require.NoError(t, err)
		clk.Advance(time.Minute)
		b, _, err := s.Rotate(ctx, a, tokenstore.WithGrace(5*time.Minute))
		require.NoError(t, err)
		pairs[i] = pairT{a, b}
	}
	due, _, err := s.Issue(ctx, "due")
	require.NoError(t, err)
	_, err = s.Validate(ctx, pairs[0].a) // loads the read script
	require.NoError(t, err)

	base := infoInt(t, raw, "memory", "used_memory")
	require.NoError(t, raw.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base+256<<10, 10)).Err())
	var full error
	for i := 0; full == nil; i++ {
		require.Less(t, i, 100000, "Redis never filled up")
		_, _, full = s.Issue(ctx, fmt.Sprintf("user-%d", i))
	}
	require.ErrorIs(t, full, redisstore.ErrOutOfMemory)
	require.NoError(t, raw.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base, 10)).Err())

	clk.Advance(2 * time.Second) // the successor's use is a write that needs memory (u)
	for i, use := range uses {
		p := pairs[i]
		if i == 1 {
			clk.Advance(2 * time.Minute)
			dropped := s.TouchesDropped()
			_, err = s.Validate(ctx, due)
			require.NoError(t, err)
			require.Equal(t, dropped+1, s.TouchesDropped(), "a due use refused: the store stops trying use writes")
		}
		if use == "Validate" {
			_, err = s.Validate(ctx, p.b)
		} else {
			_, err = s.Lookup(ctx, p.b)
		}
		require.NoError(t, err, "%s %d of the successor on a full Redis", use, i)
		_, err = s.Validate(ctx, p.a)
		require.ErrorIs(t, err, tokenstore.ErrReused, "the old token after the successor's first %s (%d) on a full Redis", use, i)
		_, err = s.Validate(ctx, p.b)
		require.ErrorIs(t, err, tokenstore.ErrNotFound, "the reuse revoked the family (deleting needs no memory)")
	}
}
