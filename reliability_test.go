package tokenstore_test

// The reliability suite (issue 6). This file holds what its tests share:
// flags, a fake clock, helpers. The tests are in reliability_*_test.go
// (those that need child processes or Linux system calls are Linux-only)
// and fuzz*_test.go; README.guarantees.md states what they show and how to
// run their long versions.

import (
	"context"
	"flag"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

var (
	crashRounds = flag.Int("crash.rounds", 20, "SIGKILL rounds of TestCrash_Durability and TestCrash_SlidingLoss (long run: 500)")
	crashSeed   = flag.Uint64("crash.seed", 0, "seed of the reliability tests' random choices (0: random; the seed used is logged)")
)

// relSeed returns the suite's random seed, logging it so a failure can be
// replayed with -crash.seed.
func relSeed(t testing.TB) uint64 {
	s := *crashSeed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (replay with -crash.seed=%d)", s, s)
	return s
}

// relClock is an injectable clock (Options.Now) that tests move by hand.
type relClock struct{ ms atomic.Int64 }

func newRelClock(t time.Time) *relClock {
	c := &relClock{}
	c.ms.Store(t.UnixMilli())
	return c
}

func (c *relClock) Now() time.Time            { return time.UnixMilli(c.ms.Load()) }
func (c *relClock) Ms() int64                 { return c.ms.Load() }
func (c *relClock) Set(t time.Time)           { c.ms.Store(t.UnixMilli()) }
func (c *relClock) Add(d time.Duration) int64 { return c.ms.Add(d.Milliseconds()) }
func (c *relClock) AddMs(ms int64) int64      { return c.ms.Add(ms) }

// relEpoch is where fake clocks start: a fixed instant, so that figures
// and failures replay.
var relEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// relOpen opens path and closes it when the test ends.
func relOpen(t testing.TB, path string, o *tokenstore.Options) *tokenstore.DB {
	t.Helper()
	db, err := tokenstore.Open(path, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// relCheck fails the test when db.Check reports a problem.
func relCheck(t testing.TB, db *tokenstore.DB) {
	t.Helper()
	problems, err := db.Check(context.Background())
	require.NoError(t, err)
	require.Empty(t, problems, "Check")
}

// TestReliability_ForEachPanicIsTheCallers: the store turns bbolt's panics
// on a damaged file into ErrCorrupt, but a panic in ForEach's callback is
// the caller's and reaches it as a panic; the store works on.
func TestReliability_ForEachPanicIsTheCallers(t *testing.T) {
	ctx := context.Background()
	db := relOpen(t, filepath.Join(t.TempDir(), "tokens.db"), nil)
	_, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	require.PanicsWithValue(t, "boom", func() {
		_ = db.ForEach(ctx, func(tokenstore.Info) error { panic("boom") })
	})
	_, _, err = db.Issue(ctx, "user")
	require.NoError(t, err)
}
