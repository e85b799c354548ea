package tokenstoretest

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// A store keeps a policy's durations in whole milliseconds. A policy it
// could not keep exactly as it says is refused with ErrInvalidPolicy and a
// reason; every other one is stored and reported unchanged by every Info.

// testPolicyRefused: policies that the millisecond resolution would change,
// or under which no use could extend a sliding token, are refused, and
// nothing is stored.
func testPolicyRefused(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	tests := []struct {
		name string
		give tokenstore.Policy
		why  string // in the error text
	}{
		// The reported case: the cap became "no cap".
		{"cap below resolution", tokenstore.Sliding(hour, 500*time.Microsecond), "at least 1ms"},
		{"cap of 1ns", tokenstore.Sliding(hour, 1), "at least 1ms"},
		{"cap not whole ms", tokenstore.Sliding(hour, 90*time.Minute+time.Microsecond), "whole number of milliseconds"},
		{"idle not whole ms", tokenstore.Sliding(1500*time.Microsecond, 0), "whole number of milliseconds"},
		{"absolute not whole ms", tokenstore.Absolute(1500 * time.Microsecond), "whole number of milliseconds"},
		{"units slip", tokenstore.Absolute(time.Duration(30)), "at least 1ms"},
		{"idle longer than cap", tokenstore.Sliding(2*hour, hour), "longer than the max lifetime"},
		{"idle 1ms longer than cap", tokenstore.Sliding(hour+time.Millisecond, hour), "longer than the max lifetime"},
		{"largest duration", tokenstore.Absolute(math.MaxInt64), "whole number of milliseconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, _, err := e.s.Issue(e.ctx, "user", tokenstore.WithPolicy(tt.give))
			require.ErrorIs(t, err, tokenstore.ErrInvalidPolicy)
			assert.Contains(t, err.Error(), tt.why)
			assert.Empty(t, token)
			require.ErrorIs(t, tt.give.Validate(), tokenstore.ErrInvalidPolicy, "Policy.Validate agrees")
		})
	}
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list, "nothing stored")
}

// testPolicyReported: accepted policies at the edges (the resolution, idle
// equal to the cap, the longest duration a store can keep) are reported
// unchanged by Issue, Validate, Lookup, Get and List, with ExpiresAt by
// the policy's own arithmetic, and honoured to the millisecond.
func testPolicyReported(t *testing.T, open Opener) {
	longest := time.Duration(math.MaxInt64).Truncate(time.Millisecond)
	tests := []struct {
		name string
		give tokenstore.Policy
		walk bool // move the clock to the deadline (not for centuries)
	}{
		{"absolute 1ms", tokenstore.Absolute(time.Millisecond), true},
		{"sliding 1ms", tokenstore.Sliding(time.Millisecond, 0), true},
		{"sliding 1ms cap 1ms", tokenstore.Sliding(time.Millisecond, time.Millisecond), true},
		{"sliding idle equals cap", tokenstore.Sliding(hour, hour), true},
		{"sliding cap 1ms above idle", tokenstore.Sliding(hour, hour+time.Millisecond), true},
		{"sliding 1h cap 90m", tokenstore.Sliding(hour, 90*time.Minute), true},
		{"absolute longest", tokenstore.Absolute(longest), false},
		{"sliding longest", tokenstore.Sliding(longest, 0), false},
		{"sliding longest cap", tokenstore.Sliding(hour, longest), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.give.Validate())
			// Every use written: what is checked is the policy, not how far
			// a backend lets a stored use lag (Touch/Interval checks that).
			e := newEnv(t, open, func(c *Config) { c.TouchInterval = -1 })
			created := e.clock.Now()
			token, info := e.issue("user", tokenstore.WithPolicy(tt.give))
			same := func(op string, got tokenstore.Info, used time.Time) {
				t.Helper()
				assert.Equal(t, tt.give, got.Policy, "%s: Policy", op)
				assert.Equal(t, tt.give.String(), got.Policy.String(), "%s: Policy.String", op)
				timeEq(t, tt.give.ExpiresAt(created, used), got.ExpiresAt, op+": ExpiresAt")
			}
			same("Issue", info, created)

			now := created
			if tt.give.TTL() > time.Millisecond {
				now = e.clock.Advance(time.Millisecond)
			}
			got, err := e.s.Validate(e.ctx, token)
			require.NoError(t, err)
			used := created
			if tt.give.IsSliding() {
				used = now
			}
			same("Validate", got, used)
			got, err = e.s.Lookup(e.ctx, token)
			require.NoError(t, err)
			same("Lookup", got, used)
			got, err = e.s.Get(e.ctx, info.ID)
			require.NoError(t, err)
			same("Get", got, used)
			list, err := e.s.List(e.ctx, "user")
			require.NoError(t, err)
			require.Len(t, list, 1)
			same("List", list[0], used)

			if !tt.walk {
				return
			}
			deadline := tt.give.ExpiresAt(created, used)
			if d := deadline.Sub(e.clock.Now()) - time.Millisecond; d > 0 {
				e.clock.Advance(d)
			}
			_, err = e.s.Lookup(e.ctx, token)
			require.NoError(t, err, "1ms before the reported deadline")
			e.clock.Advance(time.Millisecond)
			_, err = e.s.Lookup(e.ctx, token)
			e.errIs(err, tokenstore.ErrExpired, "at the reported deadline")
		})
	}
}
