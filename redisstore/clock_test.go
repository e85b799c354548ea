package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// TestClock_BehindRedis: an Options.Now that disagrees with Redis's clock,
// before 1970 (negative Unix times, which SET PXAT refused: Issue failed
// with Redis's "invalid expire time", and PEXPIREAT took as long past) or
// merely behind it, keeps every key Redis expires alive as long as the
// store's clock says, counted from each write on Redis's clock: before,
// a clock behind Redis's had Redis drop each token at once. Both ways of
// writing uses, and every key that expires: record, ID key, family key,
// tombstone (the conformance suite's Clock/Before1970 checks the answers).
func TestClock_BehindRedis(t *testing.T) {
	ctx := context.Background()
	const keep = 10 * time.Minute
	for _, start := range []time.Time{
		time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 30, 0, 0, time.UTC), // deadlines after 1970, long past for Redis
		time.Now().Add(-2 * time.Hour),
	} {
		for _, touch := range []time.Duration{0, -1} {
			t.Run(fmt.Sprintf("%s/TouchInterval=%v", start.Format(time.RFC3339), touch), func(t *testing.T) {
				clk := tokenstoretest.NewClockAt(start)
				prefix := uniquePrefix()
				raw := newClient(t)
				s := newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, KeepExpired: keep, TouchInterval: touch,
					Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})
				a, aInfo, err := s.Issue(ctx, "user")
				require.NoError(t, err)
				for _, key := range []string{recordKey(prefix, a), prefix + "i:" + aInfo.ID.String()} {
					expiresIn(t, raw, key, aInfo.ExpiresAt.Add(keep), clk.Now(), key)
				}

				clk.Advance(45 * time.Minute)
				got, err := s.Validate(ctx, a)
				require.NoError(t, err)
				require.Equal(t, clk.Now().Add(time.Hour), got.ExpiresAt)
				expiresIn(t, raw, recordKey(prefix, a), got.ExpiresAt.Add(keep), clk.Now(), "slid")

				b, bInfo, err := s.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
				require.NoError(t, err)
				expiresIn(t, raw, recordKey(prefix, b), bInfo.ExpiresAt.Add(keep), clk.Now(), "successor")
				expiresIn(t, raw, prefix+"f:"+aInfo.ID.String(), bInfo.ExpiresAt.Add(keep), clk.Now(), "family key")
				expiresIn(t, raw, prefix+"r:"+hashHex(a), got.ExpiresAt, clk.Now(), "tombstone: the old token's deadline")
				_, err = s.Validate(ctx, a)
				require.NoError(t, err, "in its grace")
				_, err = s.Validate(ctx, b)
				require.NoError(t, err)
				_, err = s.Validate(ctx, a)
				require.ErrorIs(t, err, tokenstore.ErrReused, "after the successor's first use")
				_, err = s.Validate(ctx, b)
				require.ErrorIs(t, err, tokenstore.ErrNotFound, "family revoked")
				_, err = s.Lookup(ctx, a)
				require.ErrorIs(t, err, tokenstore.ErrReused, "still a reuse: the grace it ended is not open until 1970")

				c, _, err := s.Issue(ctx, "user")
				require.NoError(t, err)
				_, _, err = s.Rotate(ctx, c)
				require.NoError(t, err)
				_, err = s.Lookup(ctx, c)
				assert.ErrorIs(t, err, tokenstore.ErrReused, "rotated without a grace: no grace 'until 1970'")
			})
		}
	}
}

// TestClock_RedisKeysExpireAtDeadlines: on Redis's own clock (Options.Now
// nil) every key that expires does so at an instant on that clock
// (PEXPIREAT), the one the store's answers name: a record and its ID key
// at the deadline + KeepExpired, moved by a written use; a successor's
// keys and its family key likewise; a tombstone, and a family left by a
// rotation into a new one, at the old token's deadline. Since 6c745e8
// the other tests check the keys' lives under Options.Now only (PTTL from
// the write), so this is what holds the default path to its instants.
func TestClock_RedisKeysExpireAtDeadlines(t *testing.T) {
	ctx := context.Background()
	const keep = 10 * time.Minute
	prefix := uniquePrefix()
	raw := newClient(t)
	s := newStore(t, &redisstore.Options{KeyPrefix: prefix, KeepExpired: keep, TouchInterval: -1,
		Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})
	at := func(key string, want time.Time, what string) {
		t.Helper()
		got, err := raw.PExpireTime(ctx, key).Result()
		require.NoError(t, err)
		assert.Equal(t, want.UnixMilli(), got.Milliseconds(), "%s (%s): expires at that instant on Redis's clock", what, key)
	}

	a, aInfo, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	at(recordKey(prefix, a), aInfo.ExpiresAt.Add(keep), "record")
	at(prefix+"i:"+aInfo.ID.String(), aInfo.ExpiresAt.Add(keep), "ID key")

	redisPassed(t, raw, aInfo.CreatedAt) // a use at the same ms would not slide
	slid, err := s.Validate(ctx, a)
	require.NoError(t, err)
	require.True(t, slid.ExpiresAt.After(aInfo.ExpiresAt), "the use slid it")
	at(recordKey(prefix, a), slid.ExpiresAt.Add(keep), "record, slid")
	at(prefix+"i:"+aInfo.ID.String(), slid.ExpiresAt.Add(keep), "ID key, slid")

	b, bInfo, err := s.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	at(recordKey(prefix, b), bInfo.ExpiresAt.Add(keep), "successor")
	at(prefix+"i:"+bInfo.ID.String(), bInfo.ExpiresAt.Add(keep), "successor's ID key")
	at(prefix+"f:"+aInfo.ID.String(), bInfo.ExpiresAt.Add(keep), "family key")
	at(prefix+"r:"+hashHex(a), slid.ExpiresAt, "tombstone")

	c, cInfo, err := s.Rotate(ctx, b, tokenstore.WithGrace(time.Minute), tokenstore.WithNewFamily())
	require.NoError(t, err)
	at(prefix+"f:"+cInfo.FamilyID.String(), cInfo.ExpiresAt.Add(keep), "the new family's key")
	at(prefix+"f:"+aInfo.ID.String(), bInfo.ExpiresAt, "the old family's key, left with b in its grace: b's deadline")
	at(prefix+"r:"+hashHex(b), bInfo.ExpiresAt, "b's tombstone")

	redisPassed(t, raw, cInfo.CreatedAt)
	cSlid, err := s.Validate(ctx, c)
	require.NoError(t, err)
	at(prefix+"f:"+cInfo.FamilyID.String(), cSlid.ExpiresAt.Add(keep), "the family key, slid with its live token")
}

// redisPassed returns once Redis's clock (TIME) reads past t's millisecond.
func redisPassed(t *testing.T, raw *redis.Client, at time.Time) {
	t.Helper()
	for {
		now, err := raw.Time(context.Background()).Result()
		require.NoError(t, err)
		if now.UnixMilli() > at.UnixMilli() {
			return
		}
	}
}
