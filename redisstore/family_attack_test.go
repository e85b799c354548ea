package redisstore_test

import (
	"strings"

	"context"
	"errors"
	"fmt"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"sync"
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
//
// Both ways of writing uses: a read first (TouchInterval >= 0), and one
// script that checks and writes (TouchInterval < 0).
func TestFamily_FullRedisSuccessorUseEndsGrace(t *testing.T) {
	for _, touch := range []time.Duration{time.Minute, -1} {
		t.Run(fmt.Sprintf("TouchInterval=%v", touch), func(t *testing.T) { testFullRedisSuccessorUseEndsGrace(t, touch) })
	}
}

func testFullRedisSuccessorUseEndsGrace(t *testing.T, touch time.Duration) {
	srv := ownRedis(t, "--maxmemory-policy", "noeviction")
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	clk := newClock()
	s := storeOn(t, srv.Addr, &redisstore.Options{Now: clk.Now, TouchInterval: touch, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})

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

	fillRedis(t, raw, s)

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
	clk.Advance(time.Second) // the retry re-derives with the time the stored successor carries
	again, _, err := old.Rotate(ctx, a1, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err, "a retry on the older instance of a Rotate made on the newer")
	require.Equal(t, b1, again)

	a2, _, err := old.Issue(ctx, "user")
	require.NoError(t, err)
	b2, _, err := old.Rotate(ctx, a2, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	clk.Advance(time.Second)
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

// TestFamily_TwoInstancesRace: two instances of one application (two
// Stores, each with its own client, on Redis's clock) race the calls of
// one family. Whatever order Redis runs the scripts in, a family that a
// reuse or RevokeFamily revoked keeps no working token, and a grace gives
// one successor.
func TestFamily_TwoInstancesRace(t *testing.T) {
	ctx := context.Background()
	s1, s2 := pair(t, redisstore.Options{Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})
	stores := []*redisstore.Store{s1, s2}
	const rounds = 30

	t.Run("GraceRetries", func(t *testing.T) {
		for r := range rounds / 3 {
			a, _, err := s1.Issue(ctx, fmt.Sprintf("grace-%d", r))
			require.NoError(t, err)
			issued := s1.Stats().Issued + s2.Stats().Issued
			got := make([]string, 32)
			errs := make([]error, 32)
			var wg sync.WaitGroup
			for i := range got {
				wg.Go(func() { got[i], _, errs[i] = stores[i%2].Rotate(ctx, a, tokenstore.WithGrace(time.Minute)) })
			}
			wg.Wait()
			for i := range got {
				require.NoError(t, errs[i], "Rotate %d on instance %d", i, i%2+1)
				require.Equal(t, got[0], got[i], "Rotate %d on instance %d: one successor", i, i%2+1)
			}
			assert.Equal(t, issued+1, s1.Stats().Issued+s2.Stats().Issued, "one successor issued across both instances")
			list, err := s2.List(ctx, fmt.Sprintf("grace-%d", r))
			require.NoError(t, err)
			assert.Len(t, list, 1)
		}
	})

	// Each round: a family A -> B; one instance rotates B (with or
	// without a grace) while the other presents A again (a reuse) or
	// revokes the family.
	for _, attack := range []string{"reuse", "RevokeFamily"} {
		for _, grace := range []time.Duration{0, time.Minute} {
			t.Run(fmt.Sprintf("%s/grace=%v", attack, grace), func(t *testing.T) {
				for r := range rounds {
					sub := fmt.Sprintf("%s-%v-%d", attack, grace, r)
					a, aInfo, err := s1.Issue(ctx, sub)
					require.NoError(t, err)
					b, _, err := s1.Rotate(ctx, a)
					require.NoError(t, err)
					rot, att := stores[r%2], stores[(r+1)%2]
					var c string
					var rotErr, attErr error
					var wg sync.WaitGroup
					wg.Go(func() { c, _, rotErr = rot.Rotate(ctx, b, tokenstore.WithGrace(grace)) })
					wg.Go(func() {
						if attack == "reuse" {
							_, attErr = att.Validate(ctx, a)
							if errors.Is(attErr, tokenstore.ErrReused) {
								attErr = nil
							}
						} else {
							_, attErr = att.RevokeFamily(ctx, aInfo.ID)
						}
					})
					wg.Wait()
					require.NoError(t, attErr, "round %d", r)
					if rotErr != nil {
						require.ErrorIs(t, rotErr, tokenstore.ErrNotFound, "round %d: the family was revoked first", r)
					}
					for _, s := range stores {
						for name, tok := range map[string]string{"A": a, "B": b, "C": c} {
							if tok == "" {
								continue
							}
							_, err := s.Validate(ctx, tok)
							assert.Error(t, err, "round %d: %s works after the family's revocation (rotate first: %v)", r, name, rotErr == nil)
						}
					}
					list, err := s2.List(ctx, sub)
					require.NoError(t, err)
					assert.Empty(t, list, "round %d: a live token left in a revoked family", r)
				}
			})
		}
	}
}

// TestFamily_DamagedKeysCostOnlyThemselves: a family key or a tombstone
// of another type (another program's key under the KeyPrefix) costs only
// the tokens it stands for, which fail closed, as a damaged record does:
// before, it was a Lua error (WRONGTYPE) for every List and RevokeSubject
// of the subject, for RevokeFamily, and for Validate of the family's
// tokens. A family key of another type stands for no token; a tombstone
// of another type is ErrCorrupt (TestWrongTypeKeys_Tombstone).
func TestFamily_DamagedKeysCostOnlyThemselves(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	prefix := uniquePrefix()
	raw := newClient(t)
	s := newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour), MaxTokensPerSubject: 4})
	noLua := func(err error, what string) {
		t.Helper()
		if err != nil {
			require.NotContains(t, err.Error(), "user_script", what+": a Lua error is not an answer")
			require.NotContains(t, err.Error(), "WRONGTYPE", what)
		}
	}

	other, otherInfo, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	a, aInfo, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	b, _, err := s.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	c, _, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	d, _, err := s.Rotate(ctx, c)
	require.NoError(t, err)
	e, eInfo, err := s.Issue(ctx, "user")
	require.NoError(t, err)

	require.NoError(t, raw.Set(ctx, prefix+"f:"+aInfo.ID.String(), "not a family", 0).Err())
	require.NoError(t, raw.Set(ctx, prefix+"r:"+hashHex(c), "not a tombstone", 0).Err())
	require.NoError(t, raw.Set(ctx, prefix+"f:"+eInfo.ID.String(), "not a family either", 0).Err())

	_, err = s.Validate(ctx, b)
	noLua(err, "Validate of a token whose family key is damaged")
	require.ErrorIs(t, err, tokenstore.ErrNotFound, "it fails closed: RevokeFamily cannot reach it")
	_, err = s.Validate(ctx, a)
	noLua(err, "Validate of its predecessor in its grace")
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	_, err = s.Validate(ctx, c)
	noLua(err, "Validate of a token whose tombstone is damaged")
	require.ErrorIs(t, err, tokenstore.ErrCorrupt, "a damaged tombstone is reported, not taken for none")
	_, _, err = s.Rotate(ctx, c)
	noLua(err, "Rotate of it")
	require.ErrorIs(t, err, tokenstore.ErrCorrupt)

	_, err = s.Validate(ctx, other)
	require.NoError(t, err, "another token of the subject")
	_, err = s.Validate(ctx, d)
	require.NoError(t, err, "another family of the subject")
	list, err := s.List(ctx, "user")
	noLua(err, "List")
	require.NoError(t, err)
	assert.Len(t, list, 3, "List: other, d and e")
	n, err := s.RevokeFamily(ctx, aInfo.ID)
	noLua(err, "RevokeFamily")
	require.NoError(t, err)
	assert.Zero(t, n, "no live token of that family")

	// A token never rotated whose family key is damaged rotates: the key
	// is the store's by its name, and named no token.
	e2, _, err := s.Rotate(ctx, e)
	noLua(err, "Rotate of a token whose family key is damaged, never rotated")
	require.NoError(t, err)
	_, err = s.Validate(ctx, e2)
	require.NoError(t, err, "its successor works")
	_, err = s.Validate(ctx, e)
	require.ErrorIs(t, err, tokenstore.ErrReused, "and it is tombstoned")

	n, err = s.RevokeSubject(ctx, "user")
	noLua(err, "RevokeSubject")
	require.NoError(t, err)
	assert.Positive(t, n)
	for _, tok := range []string{other, b, d, e2} {
		_, err := s.Validate(ctx, tok)
		require.ErrorIs(t, err, tokenstore.ErrNotFound, "logged out everywhere")
	}
	_, err = s.Get(ctx, otherInfo.ID)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
}

// TestFamily_FullRedisRevokeFamily: RevokeFamily only deletes (and ends a
// grace), which a full Redis allows, as it allows the other revocations:
// also for a family whose only token left is one in its grace, rotated
// into a new family. So does Revoke of a token in its grace.
func TestFamily_FullRedisRevokeFamily(t *testing.T) {
	srv := ownRedis(t, "--maxmemory-policy", "noeviction")
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	clk := newClock()
	s := storeOn(t, srv.Addr, &redisstore.Options{Now: clk.Now, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})
	a, aInfo, err := s.Issue(ctx, "victim")
	require.NoError(t, err)
	clk.Advance(time.Minute)
	b, bInfo, err := s.Rotate(ctx, a, tokenstore.WithGrace(5*time.Minute), tokenstore.WithNewFamily())
	require.NoError(t, err)
	c, cInfo, err := s.Issue(ctx, "victim")
	require.NoError(t, err)
	clk.Advance(time.Minute)
	d, _, err := s.Rotate(ctx, c, tokenstore.WithGrace(5*time.Minute))
	require.NoError(t, err)
	e, _, err := s.Issue(ctx, "victim")
	require.NoError(t, err)
	f, _, err := s.Rotate(ctx, e, tokenstore.WithGrace(5*time.Minute))
	require.NoError(t, err)

	fillRedis(t, raw, s)

	_, err = s.Validate(ctx, a)
	require.NoError(t, err, "in its grace")
	// Revoke of a token in its grace only deletes: its successor and its
	// tombstone.
	require.NoError(t, s.Revoke(ctx, e), "Revoke of a token in its grace, on a full Redis")
	for _, tok := range []string{e, f} {
		_, err = s.Validate(ctx, tok)
		require.ErrorIs(t, err, tokenstore.ErrNotFound)
	}
	n, err := s.RevokeFamily(ctx, aInfo.ID)
	require.NoError(t, err, "RevokeFamily of the old family, whose only token is in its grace, on a full Redis")
	assert.Zero(t, n)
	_, err = s.Validate(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused, "its grace ended")
	_, err = s.Validate(ctx, b)
	require.NoError(t, err, "the new family is another")

	n, err = s.RevokeFamily(ctx, cInfo.ID)
	require.NoError(t, err, "RevokeFamily of a family with a live token and one in its grace")
	assert.Equal(t, 1, n)
	for _, tok := range []string{c, d} {
		_, err = s.Validate(ctx, tok)
		require.Error(t, err)
	}
	n, err = s.RevokeFamily(ctx, bInfo.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

// TestFamily_RevokeInGraceTwoInstances: Revoke on one instance of a token
// in its grace (the conformance suite's Family/RevokeInGrace holds the
// answers) holds on every instance, the one that rotated it and holds the
// rotation key included: no Rotate of the old token makes its successor
// again. Nothing of the old token or its successor is left under the
// prefix, its family key (or its old family's, rotated into a new one)
// included.
func TestFamily_RevokeInGraceTwoInstances(t *testing.T) {
	ctx := context.Background()
	prefix := uniquePrefix()
	raw := newClient(t)
	s1, s2 := pair(t, redisstore.Options{KeyPrefix: prefix, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})
	for _, opts := range [][]tokenstore.RotateOption{
		{tokenstore.WithGrace(5 * time.Minute)},
		{tokenstore.WithGrace(5 * time.Minute), tokenstore.WithNewFamily()},
	} {
		a, _, err := s1.Issue(ctx, "user")
		require.NoError(t, err)
		b, _, err := s1.Rotate(ctx, a, opts...)
		require.NoError(t, err)
		_, err = s2.Validate(ctx, a)
		require.NoError(t, err, "in its grace")

		require.NoError(t, s2.Revoke(ctx, a))
		for i, s := range []*redisstore.Store{s1, s2} {
			_, err = s.Validate(ctx, a)
			require.ErrorIs(t, err, tokenstore.ErrNotFound, "instance %d: the old token", i+1)
			_, _, err = s.Rotate(ctx, a, opts...)
			require.ErrorIs(t, err, tokenstore.ErrNotFound, "instance %d: a retried Rotate", i+1)
			_, err = s.Validate(ctx, b)
			require.ErrorIs(t, err, tokenstore.ErrNotFound, "instance %d: the successor", i+1)
			assert.Zero(t, s.Stats().RejectedReused, "instance %d", i+1)
		}
		keys, err := raw.Keys(ctx, prefix+"*").Result()
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{prefix + "rotation-key"}, keys, "only the rotation key is left")
	}
}
