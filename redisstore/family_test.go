package redisstore_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
)

func hashHex(token string) string {
	f, err := tokenstore.NewFormat("")
	if err != nil {
		panic(err)
	}
	h, err := f.Parse(token)
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(h[:])
}

// TestFamily_Keys checks what a rotation with a grace leaves in Redis, and
// when each key expires: the tombstone at the old token's deadline, the
// family key with its live token's keys. Every key starts with the
// KeyPrefix, so a hash tag in it keeps the store on one slot.
func TestFamily_Keys(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	const keep = 10 * time.Minute
	prefix := "{fam" + uniquePrefix()[4:]
	s := newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, KeepExpired: keep, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})
	raw := newClient(t)
	a, aInfo, err := s.Issue(ctx, "user", tokenstore.WithMetadata(map[string]string{"device": "phone"}))
	require.NoError(t, err)
	clk.Advance(time.Minute)
	b, bInfo, err := s.Rotate(ctx, a, tokenstore.WithGrace(5*time.Minute))
	require.NoError(t, err)
	fam := aInfo.ID.String()

	tomb := prefix + "r:" + hashHex(a)
	got, err := raw.HGetAll(ctx, tomb).Result()
	require.NoError(t, err)
	assert.Equal(t, fam, got["fam"])
	assert.Equal(t, hashHex(b), got["next"])
	assert.Equal(t, clk.Now().Add(5*time.Minute).UnixMilli(), atoi(t, got["ge"]), "grace end")
	assert.Equal(t, aInfo.ExpiresAt.UnixMilli(), atoi(t, got["d"]), "the old token's deadline")
	assert.Equal(t, "phone", got["m:device"], "with a grace, the old record's fields")
	expiresIn(t, raw, tomb, aInfo.ExpiresAt, clk.Now(), "the tombstone expires at the old token's deadline")

	famKey := prefix + "f:" + fam
	fk, err := raw.HGetAll(ctx, famKey).Result()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"h": hashHex(b), "g": hashHex(a)}, fk)
	expiresIn(t, raw, famKey, bInfo.ExpiresAt.Add(keep), clk.Now(), "the family key expires with its live token's keys")

	rec, err := raw.HGetAll(ctx, recordKey(prefix, b)).Result()
	require.NoError(t, err)
	assert.Equal(t, fam, rec["f"])
	assert.Equal(t, aInfo.CreatedAt.UnixMilli(), atoi(t, rec["b"]), "born: the first token's creation")
	assert.Contains(t, rec, "g", "unused, within its predecessor's grace")
	exists, err := raw.Exists(ctx, recordKey(prefix, a), prefix+"i:"+fam).Result()
	require.NoError(t, err)
	assert.Zero(t, exists, "the old record and ID key are gone")

	// A use slides the live token, and its family key with it.
	clk.Advance(30 * time.Minute)
	info, err := s.Validate(ctx, b)
	require.NoError(t, err)
	rec, err = raw.HGetAll(ctx, recordKey(prefix, b)).Result()
	require.NoError(t, err)
	assert.NotContains(t, rec, "g", "the first use ends the grace")
	expiresIn(t, raw, famKey, info.ExpiresAt.Add(keep), clk.Now())

	keys, err := raw.Keys(ctx, "*").Result()
	require.NoError(t, err)
	var mine []string
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			mine = append(mine, strings.TrimPrefix(k, prefix))
		}
	}
	// record, ID key, subject index, expiry index, family key, tombstone,
	// rotation key: nothing outside the prefix (its hash tag).
	assert.Len(t, mine, 7, "%v", mine)

	// What a rotation keeps, for docs/redis.md.
	recBytes, err := raw.MemoryUsage(ctx, recordKey(prefix, b)).Result()
	require.NoError(t, err)
	graceBytes, err := raw.MemoryUsage(ctx, tomb).Result()
	require.NoError(t, err)
	_, _, err = s.Rotate(ctx, b)
	require.NoError(t, err)
	plainBytes, err := raw.MemoryUsage(ctx, prefix+"r:"+hashHex(b)).Result()
	require.NoError(t, err)
	t.Logf("MEMORY USAGE: record %d B, tombstone %d B without a grace, %d B with one (one metadata entry)", recBytes, plainBytes, graceBytes)
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return n
}

// TestFamily_EvictedFamilyKey: a rotated token whose family key is gone
// (an eviction) is gone too, as one without its ID key is: RevokeFamily
// and reuse could no longer reach it.
func TestFamily_EvictedFamilyKey(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	prefix := uniquePrefix()
	s := newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
	raw := newClient(t)
	a, aInfo, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	b, bInfo, err := s.Rotate(ctx, a)
	require.NoError(t, err)
	_, err = s.Validate(ctx, b)
	require.NoError(t, err)

	require.NoError(t, raw.Del(ctx, prefix+"f:"+aInfo.ID.String()).Err())
	_, err = s.Validate(ctx, b)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	_, err = s.Get(ctx, bInfo.ID)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	list, err := s.List(ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list)
	_, _, err = s.Rotate(ctx, b)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
}

// TestFamily_ReuseLogged: a reuse is logged at Warn with the family and
// the count, never the token or its hash.
func TestFamily_ReuseLogged(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	s := newStore(t, &redisstore.Options{Now: newClock().Now, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	a, aInfo, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	b, _, err := s.Rotate(ctx, a)
	require.NoError(t, err)
	_, err = s.Lookup(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	assert.Contains(t, err.Error(), aInfo.ID.String(), "the error names the family")
	assert.Equal(t, 1, strings.Count(err.Error(), "redisstore:"), "one prefix: %q", err)

	out := buf.String()
	assert.Contains(t, out, `"level":"WARN"`)
	assert.Contains(t, out, "token reused after rotation; family revoked")
	assert.Contains(t, out, `"family":"`+aInfo.ID.String()+`"`)
	assert.Contains(t, out, `"revoked":1`)
	for _, secret := range []string{a, b, hashHex(a), hashHex(b), a[4:12], b[4:12]} {
		assert.NotContains(t, out, secret)
		assert.NotContains(t, err.Error(), secret)
	}
}

// TestFamily_SuccessorUseWrites counts what a successor's Validate costs:
// nothing more than any token's after a plain rotation; within a grace,
// one write at its first use (which ends the grace), then nothing until
// TouchInterval. The old token's Validate within its grace writes nothing.
func TestFamily_SuccessorUseWrites(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := newStore(t, &redisstore.Options{Now: clk.Now, TouchInterval: time.Hour, Policy: tokenstore.Sliding(4*time.Hour, 0)})
	a, _, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	clk.Advance(time.Minute)
	b, _, err := s.Rotate(ctx, a)
	require.NoError(t, err)
	written := s.Stats().TouchesPersisted
	for range 3 {
		clk.Advance(time.Second)
		_, err := s.Validate(ctx, b)
		require.NoError(t, err)
	}
	assert.Equal(t, written, s.Stats().TouchesPersisted, "a successor without a grace: read-only Validates")

	clk.Advance(time.Minute)
	c, _, err := s.Rotate(ctx, b, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	for range 3 {
		_, err := s.Validate(ctx, b)
		require.NoError(t, err, "in its grace")
	}
	assert.Equal(t, written, s.Stats().TouchesPersisted, "the old token within its grace: read-only")
	clk.Advance(time.Second)
	for range 3 {
		_, err := s.Validate(ctx, c)
		require.NoError(t, err)
	}
	assert.Equal(t, written+1, s.Stats().TouchesPersisted, "one write: the successor's first use")
	_, err = s.Validate(ctx, b)
	require.ErrorIs(t, err, tokenstore.ErrReused)
}

// TestFamily_RotationKey: the key is made once, by the first Store that
// needs it, and shared: a grace retry on another instance, even one
// started after the rotation, gets the same successor.
func TestFamily_RotationKey(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	prefix := uniquePrefix()
	raw := newClient(t)
	s1 := newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
	a, _, err := s1.Issue(ctx, "user")
	require.NoError(t, err)
	n, err := raw.Exists(ctx, prefix+"rotation-key").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "no key before a Rotate with a grace needs one")
	b, _, err := s1.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	key, err := raw.Get(ctx, prefix+"rotation-key").Result()
	require.NoError(t, err)
	assert.Len(t, key, 64, "32 bytes, hex")

	s2 := newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
	again, _, err := s2.Rotate(ctx, a) // no grace asked: the retry gets the grace's successor
	require.NoError(t, err)
	assert.Equal(t, b, again)
	after, err := raw.Get(ctx, prefix+"rotation-key").Result()
	require.NoError(t, err)
	assert.Equal(t, key, after, "made once")

	// Another store (prefix) derives other successors from the same token.
	other := newStore(t, &redisstore.Options{Now: clk.Now})
	c, _, err := other.Issue(ctx, "user")
	require.NoError(t, err)
	c1, _, err := other.Rotate(ctx, c, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	assert.NotEqual(t, b, c1)
}

// TestFamily_OldFamilyKeyOutlivesGrace: rotated into a new family with a
// grace, the old token's family key (which names it, for RevokeFamily)
// lives as long as its tombstone, not until the grace's end: Redis expires
// keys by its own clock, and a key gone at the grace's end left a
// RevokeFamily after it unable to end that grace, which the store's clock
// set back then reopened. The store's clock runs 30 minutes behind
// Redis's here: a grace's end already past for Redis when the rotation
// wrote it (before keys expired by the store's clock).
func TestFamily_OldFamilyKeyOutlivesGrace(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	clk.Set(clk.Now().Add(-30 * time.Minute))
	s, raw, prefix, a, aInfo, b, rotated := rotateIntoNewFamily(t, clk)
	tomb, err := raw.HGetAll(ctx, prefix+"r:"+hashHex(a)).Result()
	require.NoError(t, err)
	expiresIn(t, raw, prefix+"f:"+aInfo.ID.String(), time.UnixMilli(atoi(t, tomb["d"])), clk.Now(), "the old family key expires with the tombstone")
	expiresIn(t, raw, prefix+"r:"+hashHex(a), time.UnixMilli(atoi(t, tomb["d"])), clk.Now(), "the tombstone")

	clk.Advance(2 * time.Minute)
	_, err = s.RevokeFamily(ctx, aInfo.ID)
	require.NoError(t, err)
	clk.Set(rotated.Add(30 * time.Second))
	_, err = s.Lookup(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused, "RevokeFamily ended the grace for good")
	_, err = s.Validate(ctx, b)
	require.NoError(t, err, "the new family is untouched")
}

// rotateIntoNewFamily issues a Sliding token a on a store of clk, and a
// minute later rotates it with a one-minute grace into b, the first token
// of a new family; rotated is the rotation's time by clk.
func rotateIntoNewFamily(t *testing.T, clk *clock) (s *redisstore.Store, raw *redis.Client, prefix, a string, aInfo tokenstore.Info, b string, rotated time.Time) {
	t.Helper()
	prefix = uniquePrefix()
	s = newStore(t, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)})
	raw = newClient(t)
	a, aInfo, err := s.Issue(context.Background(), "user")
	require.NoError(t, err)
	clk.Advance(time.Minute)
	b, _, err = s.Rotate(context.Background(), a, tokenstore.WithGrace(time.Minute), tokenstore.WithNewFamily())
	require.NoError(t, err)
	return s, raw, prefix, a, aInfo, b, clk.Now()
}

// TestFamily_ReuseEndsGraceWithoutFamilyKey: a reuse ends the presented
// token's grace in its own tombstone (ge 0), not only through its family
// key: with that key evicted, a reuse after the grace's end by the clock
// left the grace to reopen when the clock was set back, and the token
// reported stolen validated again beside its successor (a new family, so
// the revocation does not reach it).
func TestFamily_ReuseEndsGraceWithoutFamilyKey(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s, raw, prefix, a, aInfo, b, rotated := rotateIntoNewFamily(t, clk)
	require.NoError(t, raw.Del(ctx, prefix+"f:"+aInfo.ID.String()).Err(), "an eviction")

	clk.Advance(2 * time.Minute)
	_, err := s.Validate(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	clk.Set(rotated.Add(30 * time.Second))
	_, err = s.Lookup(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused, "the reuse ended the grace for good")
	_, _, err = s.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
	require.ErrorIs(t, err, tokenstore.ErrReused)
	_, err = s.Validate(ctx, b)
	require.NoError(t, err, "the new family is untouched")
}
