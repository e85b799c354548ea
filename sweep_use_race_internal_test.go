package tokenstore

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Validate that reads the clock just before a Sliding token's deadline
// and notes its use only after the sweep read that token's last use is
// the race these tests replay. The sweep's hooks (betweenTx on its log
// lines) run the Validate at the two places it can land, with the shared
// clock set back to the Validate's earlier read, which is what a Validate
// descheduled between its clock read and its use note sees:
//
//   - after the scan, before the sweep marks its tokens (the "sweep scan"
//     line): the use came first, so the token must survive the sweep;
//   - after the mark (the first "sweep transaction" line): the sweep's
//     decision came first, so the Validate must be refused and the token
//     goes.

// sweepRaceDB opens a store on a settable clock at t0 whose logger runs
// h's fn, with one token per sweep transaction so that the hooks fall
// between the passes.
func sweepRaceDB(t *testing.T, h *betweenTx) (*DB, func(time.Duration)) {
	t.Helper()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock := settableClock(t0)
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: clock, Logger: slog.New(h)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	db.sweepSize.setAll(chunkSizer{first: 1, lo: 1, hi: 1})
	return db, func(d time.Duration) { now.Store(t0.Add(d).UnixMilli()) }
}

// (a) The use first: Validates at 59 min (one of a token already cached,
// one of a token not cached, read from the file) land after the scan has
// judged both expired at 70 min, and before the sweep marks them. They
// answered valid, so the sweep keeps both, re-filed under the deadline
// their use gives (119 min); the token nobody used goes.
func TestDB_Sweep_UseBeforeMarkKeepsToken(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep scan"}
	db, at := sweepRaceDB(t, h)
	cached, _, err := db.Issue(ctx, "u", WithPolicy(Sliding(time.Hour, 0)))
	require.NoError(t, err)
	uncached, _, err := db.Issue(ctx, "u", WithPolicy(Sliding(time.Hour, 0)))
	require.NoError(t, err)
	idle, _, err := db.Issue(ctx, "u", WithPolicy(Sliding(time.Hour, 0)))
	require.NoError(t, err)
	_, err = db.Validate(ctx, cached) // at 0: cached, deadline 60 min
	require.NoError(t, err)

	at(70 * time.Minute) // the sweep's clock: all three are past their deadline
	h.fn = func(int) {
		at(59 * time.Minute) // the Validates read the clock before the sweep did
		for _, tok := range []string{cached, uncached} {
			info, err := db.Validate(ctx, tok)
			require.NoError(t, err, "before its deadline, before the sweep's decision")
			assert.Equal(t, 119*time.Minute, info.ExpiresAt.Sub(info.CreatedAt))
		}
		at(70 * time.Minute)
	}
	n, err := db.Sweep(ctx)
	h.fn = nil
	require.NoError(t, err)
	assert.Equal(t, 1, h.n, "the hook ran once")
	assert.Equal(t, 1, n, "only the token nobody used")

	for _, tok := range []string{cached, uncached} {
		info, err := db.Validate(ctx, tok)
		require.NoError(t, err, "answered valid before the sweep decided: kept")
		assert.Equal(t, 130*time.Minute, info.ExpiresAt.Sub(info.CreatedAt), "slid again at 70 min")
	}
	_, err = db.Validate(ctx, idle)
	require.ErrorIs(t, err, ErrNotFound)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)

	// Re-filed, not left due: the next sweep at 125 min (past the 119
	// min of the racing use, before the 130 min of the later one) finds
	// them alive and deletes nothing; at 131 min both go.
	require.NoError(t, db.Flush(ctx))
	at(125 * time.Minute)
	n, err = db.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	at(131 * time.Minute)
	n, err = db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}

// (b) The sweep's decision first: after the sweep has marked its tokens
// (between its transactions), a Validate, a Lookup and a Rotate whose
// clock reads 59 min, before the tokens' 60 min deadline, are refused as
// expired, as they would be had they read the clock after the sweep did:
// answered valid, the token was deleted a moment later all the same (or,
// rotated, gave a successor to a token the store had just answered
// expired). The tokens go, and nothing of the refused calls stays.
func TestDB_Sweep_UseAfterMarkIsRefused(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep transaction"}
	db, at := sweepRaceDB(t, h)
	var toks []string
	for range 3 {
		tok, _, err := db.Issue(ctx, "u", WithPolicy(Sliding(time.Hour, 0)))
		require.NoError(t, err)
		toks = append(toks, tok)
	}
	_, err := db.Validate(ctx, toks[0]) // cached
	require.NoError(t, err)

	at(70 * time.Minute)
	h.fn = func(n int) {
		if n != 1 { // after the first transaction of the subjects pass
			return
		}
		at(59 * time.Minute)
		defer at(70 * time.Minute)
		for i, tok := range toks[:2] {
			_, err := db.Validate(ctx, tok)
			require.ErrorIs(t, err, ErrExpired, "token %d: the sweep decided first", i)
			_, err = db.Lookup(ctx, tok)
			require.ErrorIs(t, err, ErrExpired, "token %d", i)
		}
		_, _, err := db.Rotate(ctx, toks[2], WithGrace(time.Minute))
		require.ErrorIs(t, err, ErrExpired, "a Rotate of a token the sweep decided to delete")
	}
	n, err := db.Sweep(ctx)
	h.fn = nil
	require.NoError(t, err)
	assert.Greater(t, h.n, 1)
	assert.Equal(t, 3, n)
	for i, tok := range toks {
		_, err := db.Validate(ctx, tok)
		require.ErrorIs(t, err, ErrNotFound, "token %d", i)
	}
	assert.Zero(t, db.Stats().Tokens)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}
