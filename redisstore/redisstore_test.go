package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// clock is an injected clock that only moves when told to.
// clock is the suite's clock: it starts at the real time, truncated to
// the millisecond, and moves only when a test moves it.
type clock = tokenstoretest.Clock

func newClock() *clock { return tokenstoretest.NewClock() }

// newClient returns a client of the test server of its own, as a separate
// application instance would have; it is closed when t ends.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                     needRedis(t),
		DisableIdentity:          true, // CLIENT SETINFO is Redis 7.2+
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var prefixes atomic.Int64

// uniquePrefix isolates a test's keys on the shared server.
func uniquePrefix() string { return fmt.Sprintf("test%d:", prefixes.Add(1)) }

// newStore opens a Store on a client of its own, closed when t ends. A nil
// o gets an injected clock; o.KeyPrefix "" gets a fresh prefix.
func newStore(t testing.TB, o *redisstore.Options) *redisstore.Store {
	t.Helper()
	if o == nil {
		o = &redisstore.Options{Now: newClock().Now}
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = uniquePrefix()
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = -1
	}
	s, err := redisstore.New(newClient(t), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// pair opens two Stores on one Redis and KeyPrefix, with separate
// clients: two instances of one application.
func pair(t *testing.T, o redisstore.Options) (a, b *redisstore.Store) {
	t.Helper()
	if o.KeyPrefix == "" {
		o.KeyPrefix = uniquePrefix()
	}
	oa, ob := o, o
	return newStore(t, &oa), newStore(t, &ob)
}

// expiresIn asserts that Redis expires key at - now after the store wrote
// it, at and now on the store's clock (Options.Now): Redis counts that
// time on its own clock, from the write, so the key's PTTL read since is
// at most that, and less by the little time gone since the write.
func expiresIn(t *testing.T, raw *redis.Client, key string, at, now time.Time, msgAndArgs ...any) {
	t.Helper()
	pttl, err := raw.PTTL(context.Background(), key).Result()
	require.NoError(t, err)
	want := at.Sub(now)
	assert.LessOrEqual(t, pttl, want, msgAndArgs...)
	assert.Greater(t, pttl, want-5*time.Second, msgAndArgs...)
}

func recordKey(prefix, token string) string {
	return prefix + "t:" + hashHex(token)
}

func TestStore_TwoInstances(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	a, b := pair(t, redisstore.Options{Now: clk.Now, Policy: tokenstore.Sliding(time.Hour, 24*time.Hour)})

	token, issued, err := a.Issue(ctx, "user-1", tokenstore.WithMetadata(map[string]string{"scope": "read"}))
	require.NoError(t, err)

	info, err := b.Validate(ctx, token)
	require.NoError(t, err, "a token issued on one instance validates on another")
	assert.Equal(t, issued.ID, info.ID)
	assert.Equal(t, "user-1", info.Subject)
	assert.Equal(t, map[string]string{"scope": "read"}, info.Metadata)

	clk.Advance(50 * time.Minute)
	info, err = b.Validate(ctx, token)
	require.NoError(t, err)
	assert.Equal(t, clk.Now().Add(time.Hour), info.ExpiresAt, "B slid it")

	seen, err := a.Lookup(ctx, token)
	require.NoError(t, err)
	assert.Equal(t, info.ExpiresAt, seen.ExpiresAt, "A sees B's slide")
	assert.Equal(t, clk.Now(), seen.LastUsedAt)

	clk.Advance(50 * time.Minute) // past the first deadline, within the slid one
	_, err = a.Validate(ctx, token)
	require.NoError(t, err)

	require.NoError(t, b.Revoke(ctx, token))
	_, err = a.Validate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrNotFound, "a revocation on one instance holds on the other")
	_, err = a.Get(ctx, issued.ID)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	require.ErrorIs(t, a.Revoke(ctx, token), tokenstore.ErrNotFound)

	// RevokeID and RevokeSubject, across instances too.
	t1, i1, err := a.Issue(ctx, "user-2")
	require.NoError(t, err)
	t2, _, err := a.Issue(ctx, "user-2")
	require.NoError(t, err)
	t3, _, err := a.Issue(ctx, "user-2")
	require.NoError(t, err)
	require.NoError(t, b.RevokeID(ctx, i1.ID))
	require.ErrorIs(t, b.RevokeID(ctx, i1.ID), tokenstore.ErrNotFound)
	_, err = a.Lookup(ctx, t1)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	n, err := b.RevokeSubject(ctx, "user-2")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for _, tok := range []string{t2, t3} {
		_, err = a.Validate(ctx, tok)
		require.ErrorIs(t, err, tokenstore.ErrNotFound)
	}
	list, err := a.List(ctx, "user-2")
	require.NoError(t, err)
	assert.Empty(t, list)
	assert.Equal(t, int64(0), a.Stats().Tokens)
}

func TestStore_Expiry(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	a, b := pair(t, redisstore.Options{Now: clk.Now, Policy: tokenstore.Absolute(time.Hour)})
	token, info, err := a.Issue(ctx, "user")
	require.NoError(t, err)
	assert.Equal(t, clk.Now().Add(time.Hour), info.ExpiresAt)

	clk.Advance(time.Hour - time.Millisecond)
	got, err := b.Validate(ctx, token)
	require.NoError(t, err, "valid while now < ExpiresAt")
	assert.Equal(t, info.ExpiresAt, got.ExpiresAt, "absolute: a use does not extend it")
	assert.Equal(t, clk.Now(), got.LastUsedAt)

	clk.Advance(time.Millisecond)
	for _, s := range []*redisstore.Store{a, b} {
		_, err = s.Validate(ctx, token)
		require.ErrorIs(t, err, tokenstore.ErrExpired)
		_, err = s.Lookup(ctx, token)
		require.ErrorIs(t, err, tokenstore.ErrExpired)
		_, _, err = s.Rotate(ctx, token)
		require.ErrorIs(t, err, tokenstore.ErrExpired)
	}
	got, err = a.Get(ctx, info.ID)
	require.ErrorIs(t, err, tokenstore.ErrExpired)
	assert.Equal(t, info.ID, got.ID, "Get shows an expired token")
	list, err := a.List(ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list)
	assert.Equal(t, int64(1), a.Stats().Tokens)
	assert.Equal(t, uint64(2), a.Stats().RejectedExpired)

	n, err := b.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = a.Validate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	_, err = a.Get(ctx, info.ID)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	assert.Equal(t, int64(0), a.Stats().Tokens)
	assert.Equal(t, uint64(1), b.Stats().Swept)
	n, err = a.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "swept once, by whichever instance came first")
}

func TestStore_SlidingCap(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	a, b := pair(t, redisstore.Options{Now: clk.Now, Policy: tokenstore.Sliding(time.Hour, 3*time.Hour)})
	token, info, err := a.Issue(ctx, "user")
	require.NoError(t, err)
	created := info.CreatedAt
	stores := []*redisstore.Store{a, b}
	for i := range 3 {
		clk.Advance(50 * time.Minute)
		got, err := stores[i%2].Validate(ctx, token)
		require.NoError(t, err)
		want := clk.Now().Add(time.Hour)
		if c := created.Add(3 * time.Hour); c.Before(want) {
			want = c
		}
		assert.Equal(t, want, got.ExpiresAt, "use %d", i)
	}
	clk.Advance(30 * time.Minute) // created + 3h: the cap
	_, err = b.Validate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrExpired, "the cap holds however often it is used")
}

// TestDeadlineMatchesPolicy holds the scripts' deadline arithmetic to
// tokenstore.Policy's: the keys expire KeepExpired after Policy.Deadline
// (by the store's clock, counted from each write on Redis's), and the
// token expires exactly there.
func TestDeadlineMatchesPolicy(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		give tokenstore.Policy
		uses []time.Duration // clock steps, a Validate after each
	}{
		{"absolute", tokenstore.Absolute(90 * time.Minute), []time.Duration{time.Minute, 80 * time.Minute}},
		{"sliding no cap", tokenstore.Sliding(time.Hour, 0), []time.Duration{59 * time.Minute, 59 * time.Minute, 1}},
		{"sliding capped", tokenstore.Sliding(time.Hour, 100*time.Minute), []time.Duration{30 * time.Minute, 50 * time.Minute, 19 * time.Minute}},
		{"sliding odd ms", tokenstore.Sliding(1234567*time.Millisecond, 7654321*time.Millisecond), []time.Duration{time.Second, 1234 * time.Second}},
	}
	const keep = 10 * time.Minute
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			prefix := uniquePrefix()
			s := newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, KeepExpired: keep, TouchInterval: -1})
			raw := newClient(t)
			token, info, err := s.Issue(ctx, "user", tokenstore.WithPolicy(tt.give))
			require.NoError(t, err)
			written := clk.Now() // the last write of the keys' expiry: a deadline moved
			checkTTL := func(expires time.Time) {
				t.Helper()
				for _, key := range []string{recordKey(prefix, token), prefix + "i:" + info.ID.String()} {
					expiresIn(t, raw, key, expires.Add(keep), written, key)
				}
				score, err := raw.ZScore(ctx, prefix+"e", recordKey("", token)[2:]+"user").Result()
				require.NoError(t, err)
				assert.Equal(t, float64(expires.UnixMilli()), score)
			}
			checkTTL(info.ExpiresAt)
			for _, step := range tt.uses {
				clk.Advance(step)
				got, err := s.Validate(ctx, token)
				require.NoError(t, err)
				want := tt.give.ExpiresAt(info.CreatedAt, clk.Now())
				assert.Equal(t, want, got.ExpiresAt)
				if !want.Equal(info.ExpiresAt) {
					written = clk.Now()
				}
				checkTTL(want)
				info.ExpiresAt = want
			}
			clk.Advance(info.ExpiresAt.Sub(clk.Now()) - time.Millisecond)
			_, err = s.Lookup(ctx, token)
			require.NoError(t, err)
			clk.Advance(time.Millisecond)
			_, err = s.Lookup(ctx, token)
			require.ErrorIs(t, err, tokenstore.ErrExpired)
		})
	}
}

// TestStore_RedisExpiresKeys shows that Redis removes a token by itself,
// at its deadline (KeepExpired -1) counted on Redis's clock from the
// write, while the store's clock stands still: the store then answers
// for the keys Redis dropped.
func TestStore_RedisExpiresKeys(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	prefix := uniquePrefix()
	s := newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, KeepExpired: -1, Policy: tokenstore.Absolute(time.Hour)})
	raw := newClient(t)
	token, info, err := s.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Absolute(20*time.Millisecond)))
	require.NoError(t, err)

	// Redis's clock, not the store's, runs out the 20 ms.
	require.Eventually(t, func() bool {
		n, err := raw.Exists(ctx, recordKey(prefix, token), prefix+"i:"+info.ID.String()).Result()
		return err == nil && n == 0
	}, 10*time.Second, 5*time.Millisecond, "Redis expired both keys at the deadline")
	_, err = s.Validate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	_, err = s.Get(ctx, info.ID)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	assert.Equal(t, int64(1), s.Stats().Tokens, "the index still holds it")

	list, err := s.List(ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list)
	members, err := raw.ZCard(ctx, prefix+"s:user").Result()
	require.NoError(t, err)
	assert.Zero(t, members, "List pruned the subject index")

	swept, err := s.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, swept, "by the store's clock the token has not expired yet")
	clk.Advance(20 * time.Millisecond)
	swept, err = s.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, swept, "Sweep counts tokens Redis expired first")
	assert.Equal(t, int64(0), s.Stats().Tokens)
	keys, err := raw.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	assert.Empty(t, keys, "nothing left behind")
}

func TestStore_RedisClock(t *testing.T) {
	ctx := context.Background()
	a, b := pair(t, redisstore.Options{Policy: tokenstore.Sliding(time.Hour, 0)}) // Now nil: Redis's TIME
	before := time.Now().Add(-5 * time.Second)
	token, info, err := a.Issue(ctx, "user")
	require.NoError(t, err)
	after := time.Now().Add(5 * time.Second)
	assert.True(t, info.CreatedAt.After(before) && info.CreatedAt.Before(after), "CreatedAt %v comes from Redis, on this machine", info.CreatedAt)
	got, err := b.Validate(ctx, token)
	require.NoError(t, err)
	assert.False(t, got.LastUsedAt.Before(info.CreatedAt))
	assert.Equal(t, got.LastUsedAt.Add(time.Hour), got.ExpiresAt)
	g, err := b.Get(ctx, info.ID)
	require.NoError(t, err)
	assert.Equal(t, got.ExpiresAt, g.ExpiresAt)
	list, err := a.List(ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1)
	_, rotated, err := b.Rotate(ctx, token)
	require.NoError(t, err)
	assert.False(t, rotated.CreatedAt.Before(got.LastUsedAt))
	n, err := a.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestStore_LimitAcrossInstances(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	a, b := pair(t, redisstore.Options{Now: clk.Now, MaxTokensPerSubject: 3, Policy: tokenstore.Absolute(time.Hour)})
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			_, _, err := s.Issue(ctx, "user")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, tokenstore.ErrTokenLimit):
				limited.Add(1)
			default:
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int64(3), ok.Load(), "the limit holds against concurrent Issues on two instances")
	assert.Equal(t, int64(13), limited.Load())

	list, err := a.List(ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 3)
	require.NoError(t, b.RevokeID(ctx, list[0].ID))
	_, _, err = a.Issue(ctx, "user")
	require.NoError(t, err, "a revocation frees a slot")
	_, _, err = a.Issue(ctx, "user")
	require.ErrorIs(t, err, tokenstore.ErrTokenLimit)
	_, _, err = a.Issue(ctx, "other")
	require.NoError(t, err, "the limit is per subject")

	clk.Advance(time.Hour)
	_, _, err = b.Issue(ctx, "user")
	require.NoError(t, err, "expired tokens do not count")
	n, err := a.RevokeSubject(ctx, "user")
	require.NoError(t, err)
	assert.Equal(t, 4, n, "RevokeSubject counts the expired tokens it deletes")
}

func TestStore_Rotate(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	a, b := pair(t, redisstore.Options{Now: clk.Now, MaxTokensPerSubject: 1})
	meta := map[string]string{"device": "phone"}
	pol := tokenstore.Sliding(time.Hour, 2*time.Hour)
	old, oldInfo, err := a.Issue(ctx, "user", tokenstore.WithPolicy(pol), tokenstore.WithMetadata(meta))
	require.NoError(t, err)
	clk.Advance(time.Minute)

	tok, info, err := b.Rotate(ctx, old)
	require.NoError(t, err, "rotation is not an Issue: the limit of 1 does not refuse it")
	assert.NotEqual(t, oldInfo.ID, info.ID)
	assert.Equal(t, "user", info.Subject)
	assert.Equal(t, pol, info.Policy)
	assert.Equal(t, meta, info.Metadata)
	assert.Equal(t, clk.Now(), info.CreatedAt)
	assert.Equal(t, clk.Now().Add(time.Hour), info.ExpiresAt)

	got, err := a.Validate(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, info.ID, got.ID)
	assert.Equal(t, meta, got.Metadata)
	assert.Equal(t, oldInfo.ID, got.FamilyID, "the other instance sees the family")
	_, err = a.Validate(ctx, old)
	require.ErrorIs(t, err, tokenstore.ErrReused, "the old token, on the other instance")
	_, err = b.Lookup(ctx, tok)
	require.ErrorIs(t, err, tokenstore.ErrNotFound, "the reuse revoked the family on every instance")

	// Two instances rotate one token at once with a grace: they derive the
	// same successor (one rotation key in Redis), and issue it once.
	clk.Advance(time.Minute)
	tok, _, err = a.Issue(ctx, "user", tokenstore.WithPolicy(pol))
	require.NoError(t, err)
	var mu sync.Mutex
	successors := map[string]bool{}
	var wg sync.WaitGroup
	for _, s := range []*redisstore.Store{a, b, a, b} {
		wg.Go(func() {
			next, _, err := s.Rotate(ctx, tok, tokenstore.WithGrace(time.Minute))
			assert.NoError(t, err)
			mu.Lock()
			successors[next] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Len(t, successors, 1, "one successor on both instances")
	list, err := b.List(ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 1)

	// Without a grace: exactly one wins, the others are reuses that revoke
	// its successor.
	clk.Advance(time.Minute)
	for next := range successors {
		tok = next
	}
	var wins, reuses atomic.Int64
	for _, s := range []*redisstore.Store{a, b, a, b} {
		wg.Go(func() {
			_, _, err := s.Rotate(ctx, tok)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, tokenstore.ErrReused):
				reuses.Add(1)
			default:
				t.Errorf("Rotate: %v", err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(1), wins.Load())
	assert.Equal(t, int64(3), reuses.Load())
	list, err = b.List(ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list)
}

func TestStore_Metadata(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, nil)
	meta := map[string]string{"": "empty key", "bin": "\x00\xff\xfe", "m:nested": "x", "sub": "not the subject", "ünï": "cödé"}
	token, _, err := s.Issue(ctx, "user", tokenstore.WithMetadata(meta))
	require.NoError(t, err)
	got, err := s.Lookup(ctx, token)
	require.NoError(t, err)
	assert.Equal(t, meta, got.Metadata, "kept byte for byte")
	assert.Equal(t, "user", got.Subject)

	token, _, err = s.Issue(ctx, "user")
	require.NoError(t, err)
	got, err = s.Lookup(ctx, token)
	require.NoError(t, err)
	assert.Nil(t, got.Metadata)

	big := map[string]string{"k": string(make([]byte, tokenstore.MaxMetadataSize))}
	_, _, err = s.Issue(ctx, "user", tokenstore.WithMetadata(big))
	require.ErrorIs(t, err, tokenstore.ErrMetadataTooLarge)
}

func TestStore_List(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := newStore(t, &redisstore.Options{Now: clk.Now})
	var ids []uuid.UUID
	for i := range 4 {
		p := tokenstore.Absolute(time.Duration(10-i) * time.Hour) // later tokens expire sooner
		_, info, err := s.Issue(ctx, "user", tokenstore.WithPolicy(p))
		require.NoError(t, err)
		ids = append(ids, info.ID)
		clk.Advance(time.Millisecond)
	}
	_, _, err := s.Issue(ctx, "someone else")
	require.NoError(t, err)
	list, err := s.List(ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 4)
	for i, info := range list {
		assert.Equal(t, ids[i], info.ID, "oldest first")
	}
	clk.Advance(7*time.Hour + 30*time.Minute) // the last one (7h) has expired
	list, err = s.List(ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 3)
	list, err = s.List(ctx, "nobody")
	require.NoError(t, err)
	assert.NotNil(t, list)
	assert.Empty(t, list)
	_, err = s.List(ctx, "")
	require.ErrorIs(t, err, tokenstore.ErrInvalidSubject)
}

func TestStore_BadInput(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, &redisstore.Options{Now: newClock().Now, Prefix: "app"})
	other := newStore(t, nil) // prefix tks
	foreign, _, err := other.Issue(ctx, "user")
	require.NoError(t, err)
	token, _, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	typo := token[:10] + string(token[10]^1) + token[11:]

	for _, give := range []string{"", "app_", foreign, typo, token + "x", token[:len(token)-1]} {
		_, err := s.Validate(ctx, give)
		assert.ErrorIs(t, err, tokenstore.ErrMalformed)
		assert.ErrorIs(t, s.Revoke(ctx, give), tokenstore.ErrMalformed)
		_, _, err = s.Rotate(ctx, give)
		assert.ErrorIs(t, err, tokenstore.ErrMalformed)
	}
	assert.Equal(t, uint64(6), s.Stats().RejectedMalformed)

	unknown, _, err := newStore(t, &redisstore.Options{Prefix: "app", Now: newClock().Now}).Issue(ctx, "user")
	require.NoError(t, err)
	_, err = s.Validate(ctx, unknown)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	assert.NotContains(t, err.Error(), unknown, "errors never hold the token")
	assert.Equal(t, "redisstore: validate: token not found", err.Error())

	for _, give := range []string{"", string(make([]byte, 256)), "a\nb", "\xff"} {
		_, _, err := s.Issue(ctx, give)
		assert.ErrorIs(t, err, tokenstore.ErrInvalidSubject)
		_, err = s.RevokeSubject(ctx, give)
		assert.ErrorIs(t, err, tokenstore.ErrInvalidSubject)
	}
	_, _, err = s.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Absolute(0)))
	require.ErrorIs(t, err, tokenstore.ErrInvalidPolicy)
	_, err = s.Get(ctx, uuid.New())
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	require.ErrorIs(t, s.RevokeID(ctx, uuid.New()), tokenstore.ErrNotFound)
	n, err := s.RevokeSubject(ctx, "nobody")
	require.NoError(t, err)
	assert.Zero(t, n)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Validate(cancelled, token)
	require.ErrorIs(t, err, context.Canceled)
	_, _, err = s.Issue(cancelled, "user")
	require.ErrorIs(t, err, context.Canceled)
}

func TestStore_RevokeSubjectInChunks(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	a, b := pair(t, redisstore.Options{Now: clk.Now, Policy: tokenstore.Absolute(time.Hour)})
	const n = 2100 // three scripts of at most 1,000
	tokens := make([]string, n)
	for i := range tokens {
		var err error
		tokens[i], _, err = a.Issue(ctx, "service")
		require.NoError(t, err)
	}
	clk.Advance(time.Hour) // all expired: still counted
	got, err := b.RevokeSubject(ctx, "service")
	require.NoError(t, err)
	assert.Equal(t, n, got)
	_, err = a.Lookup(ctx, tokens[n-1])
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	assert.Equal(t, int64(0), a.Stats().Tokens)
}

func TestStore_SweepInChunks(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := newStore(t, &redisstore.Options{Now: clk.Now, Policy: tokenstore.Absolute(time.Minute)})
	const n = 2100
	for i := range n {
		_, _, err := s.Issue(ctx, fmt.Sprintf("user-%d", i%7))
		require.NoError(t, err)
	}
	live, _, err := s.Issue(ctx, "user-0", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	require.NoError(t, err)
	clk.Advance(time.Minute)
	got, err := s.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, n, got)
	assert.Equal(t, int64(1), s.Stats().Tokens)
	_, err = s.Validate(ctx, live)
	require.NoError(t, err)
	list, err := s.List(ctx, "user-0")
	require.NoError(t, err)
	assert.Len(t, list, 1)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Sweep(cancelled)
	require.ErrorIs(t, err, context.Canceled)
}

// sweepSignal is a slog handler that reports each background sweep.
type sweepSignal struct{ swept chan int64 }

func (h sweepSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h sweepSignal) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "deleted" {
			select {
			case h.swept <- a.Value.Int64():
			default: // never block the sweeper
			}
		}
		return true
	})
	return nil
}
func (h sweepSignal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h sweepSignal) WithGroup(string) slog.Handler      { return h }

func TestStore_BackgroundSweep(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	sig := sweepSignal{swept: make(chan int64, 16)}
	s := newStore(t, &redisstore.Options{
		Now: clk.Now, Policy: tokenstore.Absolute(time.Minute),
		SweepInterval: time.Millisecond, Logger: slog.New(sig),
	})
	token, _, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	clk.Advance(time.Minute)
	select {
	case n := <-sig.swept:
		assert.Equal(t, int64(1), n)
	case <-time.After(10 * time.Second):
		t.Fatal("the background sweeper did not sweep within 10s")
	}
	_, err = s.Lookup(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	require.NoError(t, s.Close()) // stops and waits for the sweeper; goleak checks
}

func TestStore_Close(t *testing.T) {
	ctx := context.Background()
	client := newClient(t)
	s, err := redisstore.New(client, &redisstore.Options{KeyPrefix: uniquePrefix(), SweepInterval: time.Hour})
	require.NoError(t, err)
	token, info, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	before := s.Stats()
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "a second Close returns nil")

	_, _, err = s.Issue(ctx, "user")
	require.ErrorIs(t, err, tokenstore.ErrClosed)
	_, err = s.Validate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrClosed)
	_, err = s.Lookup(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrClosed)
	_, err = s.Get(ctx, info.ID)
	require.ErrorIs(t, err, tokenstore.ErrClosed)
	_, err = s.List(ctx, "user")
	require.ErrorIs(t, err, tokenstore.ErrClosed)
	require.ErrorIs(t, s.Revoke(ctx, token), tokenstore.ErrClosed)
	require.ErrorIs(t, s.RevokeID(ctx, info.ID), tokenstore.ErrClosed)
	_, err = s.RevokeSubject(ctx, "user")
	require.ErrorIs(t, err, tokenstore.ErrClosed)
	_, _, err = s.Rotate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrClosed)
	_, err = s.Sweep(ctx)
	require.ErrorIs(t, err, tokenstore.ErrClosed)
	assert.Equal(t, before, s.Stats(), "after Close, Stats reports what it last read")
	require.NoError(t, client.Ping(ctx).Err(), "Close leaves the client to its owner")

	// A client closed under the Store: ErrClosed too.
	s2, err := redisstore.New(client, &redisstore.Options{KeyPrefix: uniquePrefix(), SweepInterval: -1})
	require.NoError(t, err)
	require.NoError(t, client.Close())
	_, err = s2.Validate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrClosed)
	require.NoError(t, s2.Close())
}

func TestStore_Unreachable(t *testing.T) {
	needRedis(t)
	port, err := freePortForTest()
	require.NoError(t, err)
	client := redis.NewClient(&redis.Options{
		Addr: port, DialTimeout: time.Second, MaxRetries: -1, DialerRetries: 1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { _ = client.Close() })
	s, err := redisstore.New(client, &redisstore.Options{SweepInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	token, _, err := newStore(t, nil).Issue(ctx, "user")
	require.NoError(t, err)
	_, err = s.Validate(ctx, token)
	require.Error(t, err, "no Redis: fail closed")
	for _, sentinel := range []error{tokenstore.ErrNotFound, tokenstore.ErrExpired, tokenstore.ErrMalformed} {
		assert.NotErrorIs(t, err, sentinel, "an outage is not a verdict on the token")
	}
	assert.Contains(t, err.Error(), "redisstore: validate: ")
	assert.NotContains(t, err.Error(), token)
	assert.Equal(t, int64(0), s.Stats().Tokens, "Stats keeps its last count")
}

func freePortForTest() (string, error) {
	p, err := freePort()
	return fmt.Sprintf("127.0.0.1:%d", p), err
}

func TestNew(t *testing.T) {
	client := newClient(t)
	tests := []struct {
		name string
		give redisstore.Options
		want string
	}{
		{"bad token prefix", redisstore.Options{Prefix: "Bad"}, "lowercase"},
		{"bad policy", redisstore.Options{Policy: tokenstore.Sliding(0, time.Hour)}, "invalid expiry policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.New(client, &tt.give)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err := redisstore.New(nil, nil)
	require.Error(t, err)

	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{needRedis(t)}})
	t.Cleanup(func() { _ = cluster.Close() })
	_, err = redisstore.New(cluster, nil)
	require.ErrorContains(t, err, "hash tag", "the default prefix spreads keys over slots")
	s, err := redisstore.New(cluster, &redisstore.Options{KeyPrefix: "{tokens}:", SweepInterval: -1})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s, err = redisstore.New(client, nil) // every default
	require.NoError(t, err)
	token, info, err := s.Issue(context.Background(), "user")
	require.NoError(t, err)
	assert.Equal(t, tokenstore.DefaultPolicy(), info.Policy)
	assert.Regexp(t, `^tks_[0-9A-Za-z]{49}$`, token)
	require.NoError(t, s.Revoke(context.Background(), token))
	require.NoError(t, s.Close())
}
