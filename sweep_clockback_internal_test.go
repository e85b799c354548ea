package tokenstore

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A sweep cut short leaves records deleted whose ids and expiry entries
// are still there (marked by metaSweeping). When the clock then reads
// earlier than their deadlines (stepped back across a restart), the next
// sweep must not declare the sweep whole while they remain: Check would
// call them damage and Get would answer ErrCorrupt for a swept token.
func TestDB_Sweep_CutShortThenClockBack(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "t.db")
	var now atomic.Int64
	now.Store(t0.UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	db, err := Open(path, &Options{SweepInterval: -1, Now: clock})
	require.NoError(t, err)
	var reqs []IssueRequest
	for range 8 {
		reqs = append(reqs, IssueRequest{Subject: "user", Policy: Absolute(time.Hour)})
	}
	issued, err := db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	now.Store(t0.Add(2 * time.Hour).UnixMilli())
	sctx, cancel := context.WithCancel(ctx)
	db, err = Open(path, &Options{SweepInterval: -1, Now: clock, Logger: slog.New(&cancelAfter{n: 3, cancel: cancel})})
	require.NoError(t, err)
	db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
	_, err = db.Sweep(sctx) // subjects (2 transactions), then half the records
	cancel()
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, db.Close())

	now.Store(t0.Add(30 * time.Minute).UnixMilli()) // the clock steps back
	db, err = Open(path, &Options{SweepInterval: -1, Now: clock})
	require.NoError(t, err)
	defer db.Close()
	// Due by the cut sweep's clock, not by the present one, and not
	// part of the cut sweep: the finishing sweep leaves it alone.
	fresh, _, err := db.Issue(ctx, "user", WithPolicy(Absolute(30*time.Minute)))
	require.NoError(t, err)
	_, err = db.Sweep(ctx)
	require.NoError(t, err)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	_, err = db.Validate(ctx, fresh)
	require.NoError(t, err, "a token valid by the present clock")
	list, err := db.List(ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1)
	for _, is := range issued {
		_, err := db.Get(ctx, is.Info.ID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s): %v", is.Info.ID, err)
		}
	}
}
