package reliability_test

// This file holds what the suite's tests share: flags and helpers. The
// tests that need child processes or Linux system calls are Linux-only.

import (
	"context"
	"flag"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

var (
	crashRounds = flag.Int("crash.rounds", 20, "SIGKILL rounds of TestCrash_Durability and TestCrash_SlidingLoss (long run: 500)")
	crashSeed   = flag.Uint64("crash.seed", 0, "seed of the reliability tests' random choices (0: random; the seed used is logged)")
)

// testSeed returns the suite's random seed, logging it so a failure can be
// replayed with -crash.seed.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	s := *crashSeed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (replay with -crash.seed=%d)", s, s)
	return s
}

// epoch is where the tests' clocks start: a fixed instant, so that figures
// and failures replay.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// mustOpen opens path and closes it when the test ends.
func mustOpen(t testing.TB, path string, o *tokenstore.Options) *tokenstore.DB {
	t.Helper()
	db, err := tokenstore.Open(path, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// mustCheck fails the test when db.Check reports a problem.
func mustCheck(t testing.TB, db *tokenstore.DB) {
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
	db := mustOpen(t, filepath.Join(t.TempDir(), "tokens.db"), nil)
	_, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	require.PanicsWithValue(t, "boom", func() {
		_ = db.ForEach(ctx, func(tokenstore.Info) error { panic("boom") })
	})
	_, _, err = db.Issue(ctx, "user")
	require.NoError(t, err)
}
