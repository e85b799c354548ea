package tokenstore

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cutSweep opens path on clock and runs a sweep of 4 items a
// transaction, cancelled after its nth transaction, then closes the
// store: the file is left with a sweep cut short.
func cutSweep(t *testing.T, path string, clock func() time.Time, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := Open(path, &Options{SweepInterval: -1, Now: clock, Logger: slog.New(cancelAfter(n, cancel))})
	require.NoError(t, err)
	db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
	_, err = db.Sweep(ctx)
	cancel()
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, db.Close())
}

// clockFile is a store's file on a settable clock (settableClock) that
// starts at t0.
type clockFile struct {
	path  string
	t0    time.Time
	now   *atomic.Int64
	clock func() time.Time
}

// at sets the clock to t0+d.
func (f clockFile) at(d time.Duration) { f.now.Store(f.t0.Add(d).UnixMilli()) }

// newClockFile is a path in a new directory, and a settable clock at
// 2030-01-01 UTC.
func newClockFile(t *testing.T) (f clockFile) {
	f.t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.now, f.clock = settableClock(f.t0)
	f.path = filepath.Join(t.TempDir(), "t.db")
	return f
}

// issuedFile opens a new clockFile, with no background sweep, and issues
// it 8 tokens of policy p (issueToUser). The caller closes db.
func issuedFile(t *testing.T, p Policy) (f clockFile, db *DB, issued []Issued) {
	t.Helper()
	f = newClockFile(t)
	db, err := Open(f.path, &Options{SweepInterval: -1, Now: f.clock})
	require.NoError(t, err)
	return f, db, issueToUser(t, db, 8, p)
}

// A sweep cut short leaves records deleted whose ids and expiry entries
// are still there (marked by metaSweeping). When the clock then reads
// earlier than their deadlines (stepped back across a restart), the next
// sweep must not declare the sweep whole while they remain: Check would
// call them damage and Get would answer ErrCorrupt for a swept token.
func TestDB_Sweep_CutShortThenClockBack(t *testing.T) {
	ctx := context.Background()
	f, db, issued := issuedFile(t, Absolute(time.Hour))
	require.NoError(t, db.Close())

	f.at(2 * time.Hour)
	cutSweep(t, f.path, f.clock, 3) // subjects (2 transactions), then half the records

	f.at(30 * time.Minute) // the clock steps back
	db, err := Open(f.path, &Options{SweepInterval: -1, Now: f.clock})
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

// A Sliding token filed at a deadline that a later use moved: a sweep cut
// short after its subjects pass judged it expired and deleted its
// subjects entry. The clock then steps back to between its filed deadline
// and its real one: the finishing sweep must finish it, not re-file it
// without its subjects entry (valid, missed by List and RevokeSubject,
// damage to Check once the sweep is whole).
func TestDB_Sweep_CutShortThenClockBack_SlidingFiledEarlier(t *testing.T) {
	ctx := context.Background()
	f, db, issued := issuedFile(t, Sliding(time.Hour, 0))
	f.at(30 * time.Minute)
	for _, is := range issued {
		_, err := db.Validate(ctx, is.Token) // filed at t0+1h, alive until t0+1h30
		require.NoError(t, err)
	}
	require.NoError(t, db.Close()) // the uses are written

	f.at(2 * time.Hour)
	cutSweep(t, f.path, f.clock, 2) // the subjects pass (2 transactions)

	f.at(70 * time.Minute) // after the filed deadline, before the real one
	db, err := Open(f.path, &Options{SweepInterval: -1, Now: f.clock})
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Sweep(ctx)
	require.NoError(t, err)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	list, err := db.List(ctx, "user")
	require.NoError(t, err)
	for _, is := range issued {
		if _, err := db.Validate(ctx, is.Token); err == nil {
			t.Errorf("token %s valid after its sweep began, List holds %d", is.Info.ID, len(list))
		}
	}
}

// The clock moved back between two whole sweeps, with uses held in memory
// and written: no token is deleted before its deadline by the latest use,
// none lives past it, and Check is clean after each sweep.
func TestDB_Sweep_ClockBackBetweenSweeps(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock := settableClock(t0)
	at := func(d time.Duration) { now.Store(t0.Add(d).UnixMilli()) }
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: clock})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	var reqs []IssueRequest
	for i := range 12 {
		p := Sliding(time.Hour, 0)
		if i%2 == 1 {
			p = Absolute(time.Hour)
		}
		reqs = append(reqs, IssueRequest{Subject: "user", Policy: p})
	}
	issued, err := db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	sweep := func(want int) {
		t.Helper()
		n, err := db.Sweep(ctx)
		require.NoError(t, err)
		assert.Equal(t, want, n)
		problems, err := db.Check(ctx)
		require.NoError(t, err)
		require.Empty(t, problems)
	}
	at(50 * time.Minute)
	for _, is := range issued[:6] { // 3 sliding, 3 absolute
		_, err := db.Validate(ctx, is.Token)
		require.NoError(t, err)
	}
	at(70 * time.Minute)
	sweep(9)             // every absolute, the 3 sliding never used; 3 re-filed to 1h50
	at(40 * time.Minute) // back
	sweep(0)
	for i, is := range issued[:6] {
		_, err := db.Validate(ctx, is.Token) // a use at 40 min moves nothing back
		if i%2 == 0 {
			require.NoError(t, err, "token %d", i)
		}
	}
	require.NoError(t, db.Flush(ctx))
	at(105 * time.Minute)
	sweep(0)
	for i, is := range issued[:6] {
		if i%2 == 0 {
			_, err := db.Lookup(ctx, is.Token)
			require.NoError(t, err, "token %d: alive until 1h50 by its use at 50 min", i)
		}
	}
	at(111 * time.Minute)
	sweep(3)
	assert.Zero(t, db.Stats().Tokens)
}
