package tokenstoretest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// The TouchInterval contract (see Config.TouchInterval): a use is written
// once per TouchInterval, not once per request, and what that saves costs
// a sliding token at most TouchInterval of its life, never more life.

func testTouchInterval(t *testing.T, open Opener) {
	const every = 10 * time.Minute
	e := newEnv(t, open, func(o *Config) {
		o.Policy = tokenstore.Sliding(hour, 0)
		o.TouchInterval = every
	})
	token, _ := e.issue("user")
	written := e.s.Stats().TouchesPersisted
	// flushed checks that Validate wrote nothing itself, for a store that
	// writes in the background, and then has it write what it holds.
	flusher, background := e.s.(Flusher)
	flushed := func(what string) {
		t.Helper()
		if background {
			assert.Equal(t, written, e.s.Stats().TouchesPersisted, "%s: Validate itself writes nothing", what)
			require.NoError(t, flusher.Flush(e.ctx))
		}
	}

	// The stored use (the issue) is TouchInterval behind: the use is
	// written, by Validate or by the background writer.
	now := e.clock.Advance(every)
	got, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	timeEq(t, now, got.LastUsedAt, "a use TouchInterval after the stored one")
	timeEq(t, now.Add(hour), got.ExpiresAt, "the written use slides the token")
	flushed("a use TouchInterval after the stored one")
	written++
	assert.Equal(t, written, e.s.Stats().TouchesPersisted, "the use is written")
	lastWritten := now

	// Uses within TouchInterval of the written one write nothing; what
	// they report lags by less than TouchInterval.
	var lastUse time.Time
	for range 9 {
		lastUse = e.clock.Advance(time.Minute)
		got, err := e.s.Validate(e.ctx, token)
		require.NoError(t, err)
		assert.Equal(t, written, e.s.Stats().TouchesPersisted, "a use %v after the written one", lastUse.Sub(lastWritten))
		inRange(t, got.LastUsedAt, lastUse.Add(-every+time.Millisecond), lastUse, "LastUsedAt")
		inRange(t, got.ExpiresAt, lastUse.Add(hour-every+time.Millisecond), lastUse.Add(hour), "ExpiresAt")
		looked, err := e.s.Lookup(e.ctx, token)
		require.NoError(t, err)
		assert.False(t, looked.ExpiresAt.Before(got.ExpiresAt), "Lookup sees at least what Validate said")
	}
	if background { // the last of those uses, held in memory, is written at the next pass
		flushed("uses within TouchInterval")
		written++
		assert.Equal(t, written, e.s.Stats().TouchesPersisted, "one write for the uses held")
	}

	// Left idle, it lives at least to its last use + idle - TouchInterval,
	// and never past its last use + idle.
	floor := lastUse.Add(hour - every)
	e.clock.Advance(floor.Sub(e.clock.Now()) - time.Millisecond)
	_, err = e.s.Lookup(e.ctx, token)
	require.NoError(t, err, "1ms before its last use + idle - TouchInterval")
	e.clock.Advance(lastUse.Add(hour).Sub(e.clock.Now()))
	_, err = e.s.Lookup(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "at its last use + idle")
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "a use cannot revive it")
	flushed("an expired token's use")
	assert.Equal(t, written, e.s.Stats().TouchesPersisted, "an expired token's use is not written")

	// A second token, used once a TouchInterval: every use is written.
	token, _ = e.issue("user")
	for i := range 4 {
		now := e.clock.Advance(every)
		got, err := e.s.Validate(e.ctx, token)
		require.NoError(t, err)
		flushed(fmt.Sprintf("use %d", i))
		written++
		assert.Equal(t, written, e.s.Stats().TouchesPersisted, "use %d, TouchInterval after the last", i)
		timeEq(t, now.Add(hour), got.ExpiresAt, fmt.Sprintf("ExpiresAt after use %d", i))
	}
}

func testTouchEveryUse(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) {
		o.Policy = tokenstore.Sliding(hour, 0)
		o.TouchInterval = -1
	})
	token, _ := e.issue("user")
	written := e.s.Stats().TouchesPersisted
	for i := range 5 {
		now := e.clock.Advance(time.Millisecond)
		got, err := e.s.Validate(e.ctx, token)
		require.NoError(t, err)
		assert.Equal(t, written+uint64(i)+1, e.s.Stats().TouchesPersisted, "TouchInterval < 0: every use is written")
		timeEq(t, now.Add(hour), got.ExpiresAt, "ExpiresAt")
	}
}

// inRange asserts lo <= got <= hi.
func inRange(t *testing.T, got, lo, hi time.Time, what string) {
	t.Helper()
	assert.True(t, !got.Before(lo) && !got.After(hi), "%s: %v not in [%v, %v]", what, got, lo, hi)
}
