package tokenstore

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// stepSweepDB opens a store whose sweep takes one token a transaction,
// with four tokens due once at is called, and h as its logger.
func stepSweepDB(t *testing.T, path string, h *betweenTx, sweepEvery time.Duration) (db *DB, at func()) {
	t.Helper()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock := settableClock(t0)
	db, err := Open(path, &Options{SweepInterval: sweepEvery, TouchInterval: 24 * time.Hour, Now: clock, Logger: slog.New(h)})
	require.NoError(t, err)
	db.sweepSize.setAll(chunkSizer{first: 1, lo: 1, hi: 1})
	issueToUser(t, db, 4, Absolute(time.Hour))
	return db, func() { now.Store(t0.Add(2 * time.Hour).UnixMilli()) }
}

// within fails the test when done is not closed in d: a watchdog against
// a sweep that does not stop, not a synchronisation.
func within(t *testing.T, d time.Duration, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still waiting after %v (the sweep did not stop)", what, d)
	}
}

// A sweep stops between its transactions when its ctx ends (DB.Sweep's
// caller, or Close stopping the background sweeper), and when the store
// closes under a caller's Sweep whose ctx Close does not cancel (it
// would otherwise race Close's last flush for the writer lock): each
// returns, leaves no goroutine behind, and the next sweep finishes what
// it began.
func TestDB_Sweep_StopsBetweenTransactions(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"ctx", "close under Sweep", "close under the sweeper"} {
		t.Run(how, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			path := filepath.Join(t.TempDir(), "t.db")
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			h := &betweenTx{msg: "tokenstore: sweep transaction"}
			every := time.Duration(-1)
			if how == "close under the sweeper" {
				every = time.Millisecond
			}
			db, due := stepSweepDB(t, path, h, every)
			firstTx := make(chan struct{})
			closeDone := make(chan struct{})
			var closeErr error
			h.fn = func(n int) {
				if n != 1 {
					return
				}
				switch how { // after the sweep's first transaction
				case "ctx":
					cancel()
				case "close under Sweep":
					// Close begins beside the sweep and is held in its
					// last flush (flushMu) until the sweep has returned:
					// a sweep that went on would write its next
					// transactions while the file is still open.
					db.flushMu.Lock()
					go func() { defer close(closeDone); closeErr = db.Close() }()
					<-db.closing
				default:
					// The sweep goes on only once Close has begun: with
					// no pause between its transactions it would
					// otherwise finish before Close came, and pass for
					// one that stopped.
					close(firstTx)
					<-db.closing
				}
			}
			due()
			done := make(chan struct{})
			var err error
			if how == "close under the sweeper" {
				within(t, time.Minute, firstTx, "the background sweep's first transaction")
				go func() { defer close(done); err = db.Close() }()
				within(t, 30*time.Second, done, "Close")
				require.NoError(t, err)
			} else {
				go func() { defer close(done); _, err = db.Sweep(sctx) }()
				within(t, 30*time.Second, done, "Sweep")
				if how == "ctx" {
					require.ErrorIs(t, err, context.Canceled)
					require.NoError(t, db.Close())
				} else {
					require.ErrorIs(t, err, ErrClosed)
					db.flushMu.Unlock()
					within(t, 30*time.Second, closeDone, "Close")
					require.NoError(t, closeErr)
				}
			}
			goleak.VerifyNone(t, ignore)

			// The sweep stopped after its first transaction (one token a
			// transaction, of the subjects pass: no record deleted yet), and
			// the next finishes what it began.
			db, err = Open(path, &Options{SweepInterval: -1, Now: func() time.Time { return time.Date(2030, 1, 1, 2, 0, 0, 0, time.UTC) }})
			require.NoError(t, err)
			defer func() { require.NoError(t, db.Close()) }()
			assert.Equal(t, int64(4), db.Stats().Tokens, "tokens left by the cut sweep")
			_, err = db.Sweep(ctx)
			require.NoError(t, err)
			assert.Zero(t, db.Stats().Tokens)
			problems, err := db.Check(ctx)
			require.NoError(t, err)
			assert.Empty(t, problems)
		})
	}
}

// errorsSeen is a betweenTx that also keeps the messages logged at Error,
// and counts the sweeps logged as cut short.
type errorsSeen struct {
	*betweenTx
	mu   sync.Mutex
	msgs []string
	cut  int
}

func (e *errorsSeen) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e *errorsSeen) WithGroup(string) slog.Handler      { return e }
func (e *errorsSeen) Handle(ctx context.Context, r slog.Record) error {
	e.mu.Lock()
	if r.Level >= slog.LevelError {
		e.msgs = append(e.msgs, r.Message)
	}
	if r.Message == "tokenstore: sweep cut short" {
		e.cut++
	}
	e.mu.Unlock()
	return e.betweenTx.Handle(ctx, r)
}

// A sweep cut short by Close, or by its caller's ctx, is no failure: the
// next sweep finishes it (see metaSweeping). It is not logged as an
// error, which every shutdown during a sweep did. Each case holds the
// sweep after its first transaction until what cuts it has happened: with
// no pause between its transactions, a sweep let go on would finish first,
// and log nothing to check.
func TestDB_Sweep_CutShortIsNoError(t *testing.T) {
	for _, how := range []string{"ctx", "close under Sweep", "close under the sweeper"} {
		t.Run(how, func(t *testing.T) {
			sctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h := &errorsSeen{betweenTx: &betweenTx{msg: "tokenstore: sweep transaction"}}
			t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			now, clock := settableClock(t0)
			every := time.Duration(-1)
			if how == "close under the sweeper" {
				every = time.Millisecond
			}
			db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: every, TouchInterval: 24 * time.Hour, Now: clock, Logger: slog.New(h)})
			require.NoError(t, err)
			db.sweepSize.setAll(chunkSizer{first: 1, lo: 1, hi: 1})
			issueToUser(t, db, 4, Absolute(time.Hour))
			firstTx, closeDone := make(chan struct{}), make(chan struct{})
			var closeErr error
			h.fn = func(n int) {
				if n != 1 {
					return
				}
				switch how {
				case "ctx":
					cancel()
				case "close under Sweep": // Close begins beside it, held in its last flush
					db.flushMu.Lock()
					go func() { defer close(closeDone); closeErr = db.Close() }()
					<-db.closing
				default:
					close(firstTx)
					<-db.closing
				}
			}
			now.Store(t0.Add(2 * time.Hour).UnixMilli())
			switch how {
			case "ctx":
				_, err := db.Sweep(sctx)
				require.ErrorIs(t, err, context.Canceled)
				require.NoError(t, db.Close())
			case "close under Sweep":
				_, err := db.Sweep(sctx)
				require.ErrorIs(t, err, ErrClosed)
				db.flushMu.Unlock()
				within(t, 30*time.Second, closeDone, "Close")
				require.NoError(t, closeErr)
			default:
				within(t, time.Minute, firstTx, "the background sweep's first transaction")
				require.NoError(t, db.Close())
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			assert.Empty(t, h.msgs)
			// At least the held one (under the sweeper, a tick that comes
			// with Stop may begin one more, cut short at once).
			assert.GreaterOrEqual(t, h.cut, 1, "sweeps logged as cut short")
		})
	}
}
