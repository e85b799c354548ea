package reliability_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// Test 8: clock steps. The injected clock walks forward in small steps,
// jumps back an hour and forward a day, at random, while tokens of five
// policies are validated, issued, swept and the store reopened. After
// every Validate: last-used never went backwards (not in memory, not on
// disk after a reopen), and the token was valid exactly when its policy
// says, by the clock: before created+lifetime (absolute) or before
// min(latest use+idle, created+max) (sliding).

var clockPolicies = []tokenstore.Policy{
	tokenstore.Absolute(2 * time.Hour), tokenstore.Absolute(48 * time.Hour),
	tokenstore.Sliding(30*time.Minute, 3*time.Hour), tokenstore.Sliding(48*time.Hour, 120*time.Hour),
	tokenstore.Sliding(time.Hour, 0),
}

type clockTok struct {
	token           string
	policy          tokenstore.Policy
	created, used   int64 // clock readings, ms: at Issue; the latest successful Validate's
	trueIssued      int64 // the test's own monotonic time at Issue
	expiredAt       int64 // clock reading of an ErrExpired, 0 if none yet
	backWhileAlive  int64 // total backward jumps since Issue
	resurrectedOnce bool
}

func (c *clockTok) deadline() int64 {
	if !c.policy.IsSliding() {
		return c.created + c.policy.TTL().Milliseconds()
	}
	d := c.used + c.policy.TTL().Milliseconds()
	if m := c.policy.MaxLifetime().Milliseconds(); m > 0 {
		d = min(d, c.created+m)
	}
	return d
}

func TestClock_Steps(t *testing.T) {
	for _, touch := range []time.Duration{-1, time.Minute, time.Hour} {
		t.Run(fmt.Sprintf("TouchInterval=%s", touch), func(t *testing.T) { clockSteps(t, touch) })
	}
}

func clockSteps(t *testing.T, touch time.Duration) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(testSeed(t), 8))
	clock := tokenstoretest.NewClockAt(epoch)
	path := filepath.Join(t.TempDir(), "clock.db")
	opts := &tokenstore.Options{Now: clock.Now, TouchInterval: touch, SweepInterval: -1}
	db := mustOpen(t, path, opts)
	var (
		toks                                 []*clockTok
		trueNow                              int64 // the test's monotonic time: forward steps only
		validates, back, forward, reopens    int
		sweeps, swept, resurrected, refusals int
		maxOverrun                           time.Duration
	)
	issue := func() {
		p := clockPolicies[rng.IntN(len(clockPolicies))]
		tok, info, err := db.Issue(ctx, "user", tokenstore.WithPolicy(p))
		require.NoError(t, err)
		require.Equal(t, clock.Now().UnixMilli(), info.CreatedAt.UnixMilli())
		toks = append(toks, &clockTok{token: tok, policy: p, created: clock.Now().UnixMilli(), used: clock.Now().UnixMilli(), trueIssued: trueNow})
	}
	for range 5 {
		issue()
	}
	for step := range 600 {
		switch x := rng.IntN(100); {
		case x < 8: // back an hour
			clock.Set(clock.Now().Add(-time.Hour))
			back++
			for _, c := range toks {
				c.backWhileAlive += time.Hour.Milliseconds()
			}
		case x < 12: // forward a day
			clock.Advance(24 * time.Hour)
			trueNow += (24 * time.Hour).Milliseconds()
			forward++
		case x < 40:
			d := time.Duration(1+rng.IntN(20*60)) * time.Second
			clock.Advance(d)
			trueNow += d.Milliseconds()
		case x < 46:
			issue()
		case x < 49:
			require.NoError(t, db.Close())
			db = mustOpen(t, path, opts)
			reopens++
			// What reached the disk never went backwards either.
			for _, c := range toks {
				info, err := db.Lookup(ctx, c.token)
				if err == nil {
					require.Equal(t, c.used, info.LastUsedAt.UnixMilli(), "step %d: last use after reopen", step)
				}
			}
		case x < 52:
			n, err := db.Sweep(ctx)
			require.NoError(t, err)
			live := toks[:0]
			for _, c := range toks {
				if clock.Now().UnixMilli() < c.deadline() {
					live = append(live, c)
				}
			}
			require.Equal(t, len(toks)-len(live), n, "step %d: swept", step)
			toks = live
			sweeps++
			swept += n
		default:
			if len(toks) == 0 {
				continue
			}
			c := toks[rng.IntN(len(toks))]
			now := clock.Now().UnixMilli()
			info, err := db.Validate(ctx, c.token)
			validates++
			if now >= c.deadline() {
				require.ErrorIs(t, err, tokenstore.ErrExpired, "step %d: %s at %s, deadline %s", step, c.policy, time.UnixMilli(now), time.UnixMilli(c.deadline()))
				refusals++
				c.expiredAt = max(c.expiredAt, now)
				continue
			}
			require.NoError(t, err, "step %d: %s", step, c.policy)
			if c.expiredAt > now && !c.resurrectedOnce {
				// Refused at a later clock reading, accepted now that the
				// clock was set back: the store trusts the clock.
				resurrected++
				c.resurrectedOnce = true
			}
			prev := c.used
			c.used = max(c.used, now)
			require.Equal(t, c.used, info.LastUsedAt.UnixMilli(), "step %d: last use (went back from %d?)", step, prev)
			require.GreaterOrEqual(t, info.LastUsedAt.UnixMilli(), prev, "step %d: last use went backwards", step)
			require.Equal(t, c.deadline(), info.ExpiresAt.UnixMilli(), "step %d: expiry", step)
			if m := c.policy.MaxLifetime(); m > 0 {
				require.LessOrEqual(t, info.ExpiresAt.UnixMilli(), c.created+m.Milliseconds(), "step %d: expiry past the cap", step)
			}
			if !c.policy.IsSliding() {
				// Real (monotonic) lifetime beyond the policy: only what
				// the clock was set back by.
				over := time.Duration(trueNow-c.trueIssued)*time.Millisecond - c.policy.TTL()
				maxOverrun = max(maxOverrun, over)
				require.LessOrEqual(t, over.Milliseconds(), c.backWhileAlive, "step %d: lived longer than the clock explains", step)
			}
		}
	}
	mustCheck(t, db)
	t.Logf("clock steps (TouchInterval %s): 600 steps, %d back 1h, %d forward 1d, %d reopens, %d sweeps (%d swept); "+
		"%d Validates (%d refused as expired): last-used went backwards 0 times, validity matched the policy by the clock every time; "+
		"%d tokens refused as expired validated again after the clock went back; absolute tokens outlived their TTL in monotonic time by at most %s (never more than the clock went back)",
		touch, back, forward, reopens, sweeps, swept, validates, refusals, resurrected, maxOverrun.Round(time.Minute))
}
