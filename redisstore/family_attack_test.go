package redisstore_test

import (
	"strings"

	"context"
	"fmt"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
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

// TestFamily_RotationKeyReplaced: the rotation key deleted (an operator,
// or an allkeys-* eviction: each instance reads it once, so Redis sees it
// as cold) while instances keep the old one. An instance started after
// makes a new key; every instance must then agree with the key Redis
// holds, or a grace retry on one instance of a Rotate made on another
// fails (ErrNotFound, the client logs in again), for every rotation from
// then on, not only those in their grace at the time.
func TestFamily_RotationKeyReplaced(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	prefix := uniquePrefix()
	raw := newClient(t)
	o := redisstore.Options{Now: clk.Now, KeyPrefix: prefix, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)}
	o1 := o
	old := newStore(t, &o1) // an instance that read the key before it went
	a0, _, err := old.Issue(ctx, "user")
	require.NoError(t, err)
	_, _, err = old.Rotate(ctx, a0, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	require.NoError(t, raw.Del(ctx, prefix+"rotation-key").Err())

	o2 := o
	fresh := newStore(t, &o2) // started after: makes a new key
	a1, _, err := fresh.Issue(ctx, "user")
	require.NoError(t, err)
	b1, _, err := fresh.Rotate(ctx, a1, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	again, _, err := old.Rotate(ctx, a1, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err, "a retry on the older instance of a Rotate made on the newer")
	require.Equal(t, b1, again)

	a2, _, err := old.Issue(ctx, "user")
	require.NoError(t, err)
	b2, _, err := old.Rotate(ctx, a2, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	again, _, err = fresh.Rotate(ctx, a2, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err, "a retry on the newer instance of a Rotate made on the older")
	require.Equal(t, b2, again)

	// Deleted again, and nobody has made a new one yet: the next Rotate
	// with a grace, on an instance that kept the old key, makes one that
	// every instance shares.
	require.NoError(t, raw.Del(ctx, prefix+"rotation-key").Err())
	a3, _, err := old.Issue(ctx, "user")
	require.NoError(t, err)
	b3, _, err := old.Rotate(ctx, a3, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	o3 := o
	third := newStore(t, &o3)
	again, _, err = third.Rotate(ctx, a3, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err, "a retry on an instance started after the key was made again")
	require.Equal(t, b3, again)
}

// TestFamily_RotationKeyDamaged: a rotation key that is not 32 hex bytes,
// or not a string, is refused with ErrCorrupt naming the key, and costs
// only grace rotations: Rotate without a grace, and every other call,
// keep working.
func TestFamily_RotationKeyDamaged(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(ctx context.Context, raw *redis.Client, key string) error
	}{
		{"short", func(ctx context.Context, raw *redis.Client, key string) error {
			return raw.Set(ctx, key, "abcd", 0).Err()
		}},
		{"not hex", func(ctx context.Context, raw *redis.Client, key string) error {
			return raw.Set(ctx, key, strings.Repeat("zz", 32), 0).Err()
		}},
		{"a hash", func(ctx context.Context, raw *redis.Client, key string) error {
			return raw.HSet(ctx, key, "k", "v").Err()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			prefix := uniquePrefix()
			raw := newClient(t)
			s := newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
			require.NoError(t, tc.damage(ctx, raw, prefix+"rotation-key"))
			a, _, err := s.Issue(ctx, "user")
			require.NoError(t, err)
			_, _, err = s.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
			require.ErrorIs(t, err, tokenstore.ErrCorrupt)
			assert.Contains(t, err.Error(), prefix+"rotation-key", "names the key")
			assert.Equal(t, 1, strings.Count(err.Error(), "redisstore:"), "%v", err)
			_, err = s.Validate(ctx, a)
			require.NoError(t, err, "the refused Rotate changed nothing")
			b, _, err := s.Rotate(ctx, a)
			require.NoError(t, err, "a Rotate without a grace needs no key")
			_, err = s.Validate(ctx, b)
			require.NoError(t, err)
		})
	}
}
