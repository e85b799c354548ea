package tokenstoretest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func testRevoke(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	token, info := e.issue("user")
	keep, _ := e.issue("user")
	_, err := e.s.Validate(e.ctx, token) // warm whatever a backend keeps in memory
	require.NoError(t, err)

	require.NoError(t, e.s.Revoke(e.ctx, token))
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrNotFound, "Validate right after Revoke")
	_, err = e.s.Lookup(e.ctx, token)
	e.errIs(err, tokenstore.ErrNotFound, "Lookup")
	_, err = e.s.Get(e.ctx, info.ID)
	e.errIs(err, tokenstore.ErrNotFound, "Get")
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1, "List no longer shows it")
	assert.NotEqual(t, info.ID, list[0].ID)

	e.errIs(e.s.Revoke(e.ctx, token), tokenstore.ErrNotFound, "a second Revoke")
	e.errIs(e.s.RevokeID(e.ctx, info.ID), tokenstore.ErrNotFound, "RevokeID of a revoked token")
	_, _, err = e.s.Rotate(e.ctx, token)
	e.errIs(err, tokenstore.ErrNotFound, "Rotate of a revoked token")

	_, err = e.s.Validate(e.ctx, keep)
	require.NoError(t, err, "the subject's other token still works")

	// An expired token not yet swept: Revoke deletes it, or (a backend
	// that already dropped it) says ErrNotFound. Either way it is gone.
	expiring, _ := e.issue("user", tokenstore.WithPolicy(tokenstore.Absolute(hour)))
	e.clock.Advance(2 * hour)
	if err := e.s.Revoke(e.ctx, expiring); err != nil {
		e.errIs(err, tokenstore.ErrNotFound, "Revoke of an expired token")
	}
	_, err = e.s.Validate(e.ctx, expiring)
	e.errIs(err, tokenstore.ErrNotFound, "revoked, not merely expired")
}

func testRevokeID(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	token, info := e.issue("user")
	keep, keepInfo := e.issue("user")
	_, err := e.s.Lookup(e.ctx, token)
	require.NoError(t, err)

	require.NoError(t, e.s.RevokeID(e.ctx, info.ID))
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrNotFound, "Validate right after RevokeID")
	_, err = e.s.Get(e.ctx, info.ID)
	e.errIs(err, tokenstore.ErrNotFound, "Get")
	e.errIs(e.s.RevokeID(e.ctx, info.ID), tokenstore.ErrNotFound, "a second RevokeID")
	e.errIs(e.s.Revoke(e.ctx, token), tokenstore.ErrNotFound, "Revoke after RevokeID")

	got, err := e.s.Validate(e.ctx, keep)
	require.NoError(t, err)
	assert.Equal(t, keepInfo.ID, got.ID)
}

func testRevokeSubject(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	var alice []string
	for range 5 {
		token, _ := e.issue("alice")
		alice = append(alice, token)
	}
	_, err := e.s.Validate(e.ctx, alice[0])
	require.NoError(t, err)
	bob, _ := e.issue("bob")
	alicia, _ := e.issue("alice2") // a subject that "alice" prefixes

	n, err := e.s.RevokeSubject(e.ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	for i, token := range alice {
		_, err := e.s.Validate(e.ctx, token)
		e.errIs(err, tokenstore.ErrNotFound, "alice's token %d", i)
	}
	list, err := e.s.List(e.ctx, "alice")
	require.NoError(t, err)
	assert.Empty(t, list)

	for _, token := range []string{bob, alicia} {
		_, err = e.s.Validate(e.ctx, token)
		require.NoError(t, err, "other subjects are untouched")
	}
	assert.Equal(t, int64(2), e.s.Stats().Tokens)

	n, err = e.s.RevokeSubject(e.ctx, "alice")
	require.NoError(t, err)
	assert.Zero(t, n, "again: nothing left")
	n, err = e.s.RevokeSubject(e.ctx, "nobody")
	require.NoError(t, err, "an unknown subject is not an error")
	assert.Zero(t, n)

	// A subject can get new tokens after logging out everywhere.
	token, _ := e.issue("alice")
	_, err = e.s.Validate(e.ctx, token)
	require.NoError(t, err)
}

func testRotate(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	policy := tokenstore.Sliding(2*hour, 10*hour)
	meta := map[string]string{"scope": "read", "device": "laptop"}
	old, oldInfo := e.issue("user", tokenstore.WithPolicy(policy), tokenstore.WithMetadata(meta))
	other, _ := e.issue("user")

	now := e.clock.Advance(90 * time.Minute)
	token, info, err := e.s.Rotate(e.ctx, old)
	require.NoError(t, err)
	e.secrets.add(token)
	assert.NotEqual(t, old, token)
	assert.NotEqual(t, oldInfo.ID, info.ID, "a new ID")
	assert.Equal(t, "user", info.Subject)
	assert.Equal(t, policy, info.Policy, "same policy")
	assert.Equal(t, meta, info.Metadata, "same metadata")
	timeEq(t, now, info.CreatedAt, "the new token's life starts now")
	timeEq(t, now, info.LastUsedAt, "LastUsedAt")
	timeEq(t, now.Add(2*hour), info.ExpiresAt, "ExpiresAt")

	_, err = e.s.Get(e.ctx, oldInfo.ID)
	e.errIs(err, tokenstore.ErrNotFound, "the old token's ID is gone")
	got, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err, "the new token works")
	assert.Equal(t, info.ID, got.ID)
	assert.Equal(t, meta, got.Metadata)
	assert.Equal(t, policy, got.Policy)

	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1, "the default-policy token expired at 60 minutes")
	assert.Equal(t, info.ID, list[0].ID)
	_, err = e.s.Validate(e.ctx, other)
	e.errIs(err, tokenstore.ErrExpired)

	// A chain of rotations keeps subject, policy and metadata.
	for range 3 {
		e.clock.Advance(time.Minute)
		next, nextInfo, err := e.s.Rotate(e.ctx, token)
		require.NoError(t, err)
		e.secrets.add(next)
		assert.Equal(t, policy, nextInfo.Policy)
		assert.Equal(t, meta, nextInfo.Metadata)
		token = next
	}
	list, err = e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 1)

	// The old token presented again is a reuse (see family.go): refused,
	// and the chain's live token with it.
	_, err = e.s.Validate(e.ctx, old)
	e.errIs(err, tokenstore.ErrReused, "the old token is rotated away")
	_, _, err = e.s.Rotate(e.ctx, old)
	e.errIs(err, tokenstore.ErrReused, "rotating the old token again")
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrNotFound, "the chain's live token is revoked")
}

func testRotateExpired(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	token, _ := e.issue("user")
	e.clock.Advance(hour)
	next, _, err := e.s.Rotate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired)
	assert.Empty(t, next)
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list, "rotating an expired token issues nothing")
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "and does not revive it")

	// A sliding token kept alive by use rotates fine.
	live, _ := e.issue("user", tokenstore.WithPolicy(tokenstore.Sliding(hour, 0)))
	e.clock.Advance(50 * time.Minute)
	_, err = e.s.Validate(e.ctx, live)
	require.NoError(t, err)
	e.clock.Advance(50 * time.Minute)
	next, _, err = e.s.Rotate(e.ctx, live)
	require.NoError(t, err, "alive thanks to its last use")
	e.secrets.add(next)
}

func testList(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 0) })
	list, err := e.s.List(e.ctx, "nobody")
	require.NoError(t, err, "an unknown subject is not an error")
	assert.Empty(t, list)

	// Issued a minute apart, with policies that put their deadlines in
	// another order than their creation.
	policies := []tokenstore.Policy{
		tokenstore.Sliding(3*hour, 0),
		tokenstore.Absolute(5 * hour),
		tokenstore.Absolute(2 * hour),
		tokenstore.Sliding(4*hour, 0),
	}
	var ids []uuid.UUID
	var tokens []string
	for i, p := range policies {
		token, info := e.issue("user", tokenstore.WithPolicy(p), tokenstore.WithMetadata(map[string]string{"n": fmt.Sprint(i)}))
		ids = append(ids, info.ID)
		tokens = append(tokens, token)
		e.clock.Advance(time.Minute)
	}
	e.issue("other")
	_, err = e.s.Validate(e.ctx, tokens[0]) // moves the oldest one's deadline last
	require.NoError(t, err)

	list, err = e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 4)
	for i, info := range list {
		assert.Equal(t, ids[i], info.ID, "oldest first: position %d", i)
		assert.Equal(t, "user", info.Subject)
		assert.Equal(t, policies[i], info.Policy)
		if i > 0 {
			assert.True(t, list[i-1].CreatedAt.Before(info.CreatedAt), "CreatedAt ascending")
		}
	}

	e.clock.Advance(2*hour + 30*time.Minute) // past tokens[2]'s deadline only
	list, err = e.s.List(e.ctx, "user")
	require.NoError(t, err)
	var got []uuid.UUID
	for _, info := range list {
		got = append(got, info.ID)
	}
	assert.Equal(t, []uuid.UUID{ids[0], ids[1], ids[3]}, got, "live tokens only, still oldest first")

	e.clock.Advance(10 * hour)
	list, err = e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list, "all expired")
}

func testGet(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	_, info := e.issue("user", tokenstore.WithMetadata(map[string]string{"k": "v"}))

	got, err := e.s.Get(e.ctx, info.ID)
	require.NoError(t, err)
	sameToken(t, info, got)
	timeEq(t, info.ExpiresAt, got.ExpiresAt, "ExpiresAt")

	_, err = e.s.Get(e.ctx, uuid.Must(uuid.NewV7()))
	e.errIs(err, tokenstore.ErrNotFound, "an unknown ID")
	_, err = e.s.Get(e.ctx, uuid.Nil)
	e.errIs(err, tokenstore.ErrNotFound, "the nil ID")

	e.clock.Advance(hour)
	_, err = e.s.Get(e.ctx, info.ID)
	require.Error(t, err, "an expired token")
	// Some backends (Redis) may already have dropped an expired record.
	assert.True(t, oneOf(err, tokenstore.ErrExpired, tokenstore.ErrNotFound), "Get of an expired token: %v", err)
	e.noSecret(err)
}
