package tokenstoretest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// testClockBefore1970: a store whose clock reads before 1970 (Unix times
// are negative; a badly set clock, or a test's) keeps its deadlines, its
// graces and its reuse detection as on any clock: a time before 1970 is
// no "none" and no "ended" (a grace end of 0 is one), and a backend that
// hands times to a server must hand ones it takes (Redis refuses a
// negative PEXPIREAT).
func testClockBefore1970(t *testing.T, open Opener) {
	clock := NewClockAt(time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC))
	e := newEnv(t, open, func(o *Config) {
		o.Now = clock.Now
		o.Policy = tokenstore.Sliding(hour, 10*hour)
	})
	e.clock = clock
	start := clock.Now()
	a, aInfo := e.issue("user")
	timeEq(t, start, aInfo.CreatedAt, "CreatedAt")
	timeEq(t, start.Add(hour), aInfo.ExpiresAt, "ExpiresAt: the idle timeout, not the cap")
	b, _ := e.issue("user")
	got, err := e.s.Get(e.ctx, aInfo.ID)
	require.NoError(t, err)
	timeEq(t, start.Add(hour), got.ExpiresAt, "Get")
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 2)

	now := clock.Advance(30 * time.Minute)
	got, err = e.s.Validate(e.ctx, a)
	require.NoError(t, err)
	timeEq(t, now.Add(hour), got.ExpiresAt, "a use slides it")

	clock.Advance(time.Second)
	next, _, err := e.s.Rotate(e.ctx, b, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	e.secrets.add(next)
	clock.Advance(time.Second)
	_, err = e.s.Validate(e.ctx, b)
	require.NoError(t, err, "the old token within its grace")
	again, _, err := e.s.Rotate(e.ctx, b, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err, "a retry within the grace")
	assert.Equal(t, next, again, "the same successor")
	_, err = e.s.Validate(e.ctx, next)
	require.NoError(t, err)

	c, _ := e.issue("other")
	d, _, err := e.s.Rotate(e.ctx, c)
	require.NoError(t, err)
	e.secrets.add(d)
	_, err = e.s.Validate(e.ctx, c)
	e.errIs(err, tokenstore.ErrReused, "rotated without a grace: a reuse at once, not a grace that lasts until 1970")
	_, err = e.s.Validate(e.ctx, d)
	e.errIs(err, tokenstore.ErrNotFound, "the reuse revoked the family")
	_, err = e.s.Validate(e.ctx, c)
	e.errIs(err, tokenstore.ErrReused, "presented again after the reuse: its grace stays ended (0), not open until 1970")

	clock.Advance(2 * hour)
	_, err = e.s.Validate(e.ctx, a)
	e.errIs(err, tokenstore.ErrExpired, "idle for 2h of a 1h timeout")
	n, err := e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "a and next expired")
}
