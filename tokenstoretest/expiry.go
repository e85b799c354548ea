package tokenstoretest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// A token is valid while now < ExpiresAt: one millisecond before the
// deadline it works, at the deadline it is ErrExpired.

func testAbsoluteBoundary(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	start := e.clock.Now()
	token, info := e.issue("user")
	deadline := start.Add(hour)
	timeEq(t, deadline, info.ExpiresAt, "ExpiresAt")

	e.clock.Advance(30 * time.Minute)
	got, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	timeEq(t, deadline, got.ExpiresAt, "using an absolute token does not extend it")

	e.clock.Advance(30*time.Minute - time.Millisecond)
	got, err = e.s.Validate(e.ctx, token)
	require.NoError(t, err, "1ms before the deadline")
	timeEq(t, deadline, got.ExpiresAt, "ExpiresAt")
	_, err = e.s.Lookup(e.ctx, token)
	require.NoError(t, err)

	e.clock.Advance(time.Millisecond)
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "Validate at the deadline")
	_, err = e.s.Lookup(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "Lookup at the deadline")

	e.clock.Advance(24 * hour)
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "long after, not yet swept")
}

func testSlidingBoundary(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 0) })
	start := e.clock.Now()
	token, info := e.issue("user")
	timeEq(t, start.Add(hour), info.ExpiresAt, "ExpiresAt at issue")

	// Each use just before the deadline slides it an hour past that use.
	for i := range 5 {
		now := e.clock.Advance(hour - time.Millisecond)
		got, err := e.s.Validate(e.ctx, token)
		require.NoError(t, err, "use %d, 1ms before the deadline", i)
		timeEq(t, now, got.LastUsedAt, "LastUsedAt")
		timeEq(t, now.Add(hour), got.ExpiresAt, "Validate returns the new ExpiresAt")

		looked, err := e.s.Lookup(e.ctx, token)
		require.NoError(t, err)
		timeEq(t, now.Add(hour), looked.ExpiresAt, "Lookup sees the slide")
	}
	assert.Greater(t, e.clock.Now().Sub(start), 4*hour, "the token outlived its idle timeout by use")

	last := e.clock.Now()
	e.clock.Advance(hour)
	_, err := e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "at last use + idle")
	_, err = e.s.Lookup(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired)

	got, err := e.s.Get(e.ctx, info.ID)
	if err == nil {
		t.Fatalf("Get of an expired token: no error (ExpiresAt %v, last use %v)", got.ExpiresAt, last)
	}
	require.True(t, oneOf(err, tokenstore.ErrExpired, tokenstore.ErrNotFound), "Get: %v", err)
}

func testLookupDoesNotSlide(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 0) })
	start := e.clock.Now()
	token, info := e.issue("user")

	for range 3 {
		e.clock.Advance(15 * time.Minute)
		got, err := e.s.Lookup(e.ctx, token)
		require.NoError(t, err)
		timeEq(t, start, got.LastUsedAt, "LastUsedAt")
		timeEq(t, start.Add(hour), got.ExpiresAt, "ExpiresAt")
		got, err = e.s.Get(e.ctx, info.ID)
		require.NoError(t, err)
		timeEq(t, start.Add(hour), got.ExpiresAt, "Get does not slide either")
		list, err := e.s.List(e.ctx, "user")
		require.NoError(t, err)
		require.Len(t, list, 1)
		timeEq(t, start.Add(hour), list[0].ExpiresAt, "nor does List")
	}
	e.clock.Advance(15*time.Minute - time.Millisecond)
	_, err := e.s.Lookup(e.ctx, token)
	require.NoError(t, err)
	e.clock.Advance(time.Millisecond)
	_, err = e.s.Lookup(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "the deadline never moved")
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "and Validate cannot revive it")
}

func testSlidingCap(t *testing.T, open Opener) {
	// Idle one hour, never past 90 minutes after issue.
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 90*time.Minute) })
	start := e.clock.Now()
	capAt := start.Add(90 * time.Minute)
	token, info := e.issue("user")
	timeEq(t, start.Add(hour), info.ExpiresAt, "the idle timeout comes first at issue")
	assert.Equal(t, 90*time.Minute, info.Policy.MaxLifetime())

	e.clock.Advance(20 * time.Minute)
	got, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	timeEq(t, start.Add(80*time.Minute), got.ExpiresAt, "slid, below the cap")

	e.clock.Advance(30 * time.Minute)
	got, err = e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	timeEq(t, capAt, got.ExpiresAt, "the cap bites: min(use+idle, created+max)")

	e.clock.Advance(40*time.Minute - time.Millisecond)
	got, err = e.s.Validate(e.ctx, token)
	require.NoError(t, err, "1ms before the cap")
	timeEq(t, capAt, got.ExpiresAt, "still capped")

	e.clock.Advance(time.Millisecond)
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "at the cap, though used a millisecond ago")
	_, err = e.s.Lookup(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired)
}

func testSlidingNoCap(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	idle := tokenstore.Sliding(25*hour, 0)
	token, _ := e.issue("user", tokenstore.WithPolicy(idle))
	e.clock.Advance(25 * hour)
	_, err := e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "idle for the whole timeout")

	// Used daily for 40 days (past the default 30-day cap), it never dies.
	token, _ = e.issue("user", tokenstore.WithPolicy(idle))
	var got tokenstore.Info
	for range 40 {
		e.clock.Advance(24 * hour)
		got, err = e.s.Validate(e.ctx, token)
		require.NoError(t, err)
	}
	timeEq(t, e.clock.Now().Add(25*hour), got.ExpiresAt, "ExpiresAt after 40 days")
	assert.Equal(t, time.Duration(0), got.Policy.MaxLifetime())
}
