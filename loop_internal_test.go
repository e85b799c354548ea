package tokenstore

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// sweepStall is a slog handler that holds the first sweep transaction's
// report until release is closed, so a sweep in progress lasts as long as
// the test wants, and reports each flush transaction that wrote a use.
type sweepStall struct {
	once    sync.Once
	inSweep chan struct{}
	release chan struct{}
	flushed chan struct{}
}

func (s *sweepStall) Enabled(context.Context, slog.Level) bool { return true }
func (s *sweepStall) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *sweepStall) WithGroup(string) slog.Handler            { return s }
func (s *sweepStall) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "tokenstore: sweep transaction":
		s.once.Do(func() {
			close(s.inSweep)
			<-s.release
		})
	case "tokenstore: flush transaction":
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "written" && a.Value.Int64() > 0 {
				select {
				case s.flushed <- struct{}{}:
				default:
				}
			}
			return true
		})
	}
	return nil
}

// A long background sweep (a mass expiry takes tens of seconds on 1M
// tokens) must not hold back the background writer: a use made while it
// runs still reaches the file within TouchInterval, as Options promises.
func TestDB_Loop_FlushDuringLongSweep(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock := settableClock(t0)
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := Open(path, &Options{SweepInterval: -1, Now: clock})
	require.NoError(t, err)
	live, _, err := db.Issue(ctx, "user", WithPolicy(Sliding(3*time.Hour, 0)))
	require.NoError(t, err)
	var reqs []IssueRequest
	for range 100 {
		reqs = append(reqs, IssueRequest{Subject: "other", Policy: Absolute(time.Hour)})
	}
	_, err = db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	now.Add((2 * time.Hour).Milliseconds()) // the 100 are due
	stall := &sweepStall{inSweep: make(chan struct{}), release: make(chan struct{}), flushed: make(chan struct{}, 1)}
	const touch = 200 * time.Millisecond
	db, err = Open(path, &Options{SweepInterval: 10 * time.Millisecond, TouchInterval: touch, Now: clock, Logger: slog.New(stall)})
	require.NoError(t, err)
	defer db.Close()
	defer close(stall.release)
	<-stall.inSweep // a sweep is in progress, and stays so
	info, err := db.Validate(ctx, live)
	require.NoError(t, err)
	select {
	case <-stall.flushed:
	case <-time.After(20 * touch): // far past the bound: the writer is not running
		t.Fatalf("a use made during a sweep was not written within %v (TouchInterval %v)", 20*touch, touch)
	}
	require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, mustParse(t, db, live))
		require.NoError(t, err)
		require.Equal(t, info.LastUsedAt.UnixMilli(), rec.lastUsed, "the use is in the file")
		return nil
	}))
}

func mustParse(t *testing.T, db *DB, token string) Hash {
	t.Helper()
	h, err := db.format.Parse(token)
	require.NoError(t, err)
	return h
}

// A TouchInterval under 2 ns (TouchInterval: 1, meaning a second, is an
// easy slip) halved to a zero writer period turned the background writer
// off: uses reached the file only at Close. It still writes them.
func TestDB_Loop_TinyTouchIntervalStillWrites(t *testing.T) {
	ctx := context.Background()
	stall := &sweepStall{inSweep: make(chan struct{}), release: make(chan struct{}), flushed: make(chan struct{}, 1)}
	close(stall.release)
	now, clock := settableClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, TouchInterval: 1, Now: clock, Logger: slog.New(stall)})
	require.NoError(t, err)
	defer db.Close()
	tok, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	now.Add(time.Minute.Milliseconds())
	_, err = db.Validate(ctx, tok)
	require.NoError(t, err)
	select {
	case <-stall.flushed:
	case <-time.After(5 * time.Second):
		t.Fatal("no use written by the background writer")
	}
}
