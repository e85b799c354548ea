package tokenstore

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A sweep cut short (its ctx cancelled) after its subjects pass has
// committed, before its records pass: its decision was taken at its mark,
// and the tokens have lost their subjects entries. A Validate descheduled
// between its clock read (59 min, before the 60 min deadline) and its use
// that lands after the cut must still be refused: answered valid, its use
// kept the token alive past the next sweep's clock (70 min, the cut
// sweep's own), which re-filed it without its subjects entry — missed by
// List and RevokeSubject, and reported by Check.
func TestDB_Sweep_CutAfterMarkThenUseIsRefused(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep transaction"}
	db, at := sweepRaceDB(t, h)
	var toks []string
	for range 2 {
		tok, _, err := db.Issue(ctx, "u", WithPolicy(Sliding(time.Hour, 0)))
		require.NoError(t, err)
		toks = append(toks, tok)
	}
	_, err := db.Validate(ctx, toks[0]) // cached
	require.NoError(t, err)

	at(70 * time.Minute)
	cut, cancel := context.WithCancel(ctx)
	defer cancel()
	h.fn = func(n int) {
		if n == 2 { // the subjects pass (one token a transaction) has committed
			cancel()
		}
	}
	_, err = db.Sweep(cut)
	h.fn = nil
	require.ErrorIs(t, err, context.Canceled)

	at(59 * time.Minute) // read before the sweep's clock, used after the cut
	for i, tok := range toks {
		_, err := db.Validate(ctx, tok)
		require.ErrorIs(t, err, ErrExpired, "token %d: the cut sweep decided first", i)
		_, err = db.Lookup(ctx, tok)
		require.ErrorIs(t, err, ErrExpired, "token %d", i)
	}
	_, _, err = db.Rotate(ctx, toks[0], WithGrace(time.Minute))
	require.ErrorIs(t, err, ErrExpired)

	at(70 * time.Minute)
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for i, tok := range toks {
		_, err := db.Validate(ctx, tok)
		require.ErrorIs(t, err, ErrNotFound, "token %d", i)
	}
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// Get and List answer a token the sweep has decided to delete as Lookup
// does: expired, not live. Here the sweep is cut after the first of its
// two subjects transactions, so one token has lost its subjects entry and
// the other has not; at 59 min (before the 60 min deadline, after the
// sweep's decision at 70 min) Lookup refuses both, and Get answered them
// live, List listed the one whose entry was left.
func TestDB_Sweep_CutAfterMarkGetAndListAgree(t *testing.T) {
	ctx := context.Background()
	h := &betweenTx{msg: "tokenstore: sweep transaction"}
	db, at := sweepRaceDB(t, h)
	var toks []string
	var ids []uuid.UUID
	for range 2 {
		tok, info, err := db.Issue(ctx, "u", WithPolicy(Sliding(time.Hour, 0)))
		require.NoError(t, err)
		toks, ids = append(toks, tok), append(ids, info.ID)
	}
	at(70 * time.Minute)
	cut, cancel := context.WithCancel(ctx)
	defer cancel()
	h.fn = func(n int) {
		if n == 1 {
			cancel()
		}
	}
	_, err := db.Sweep(cut)
	h.fn = nil
	require.ErrorIs(t, err, context.Canceled)

	at(59 * time.Minute)
	for i, tok := range toks {
		_, err := db.Lookup(ctx, tok)
		require.ErrorIs(t, err, ErrExpired, "token %d", i)
		_, err = db.Get(ctx, ids[i])
		require.ErrorIs(t, err, ErrExpired, "token %d: Get as Lookup", i)
	}
	listed, err := db.List(ctx, "u")
	require.NoError(t, err)
	assert.Empty(t, listed, "List as Lookup")
}
