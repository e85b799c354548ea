package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

// betweenTx is a slog handler that runs fn after each sweep transaction
// (sweepPass logs it outside the transaction): the other calls of a test
// then run between the sweep's transactions, deterministically.
type betweenTx struct {
	fn  func(n int)
	n   int
	in  bool
	msg string
}

func (b *betweenTx) Enabled(context.Context, slog.Level) bool { return true }
func (b *betweenTx) WithAttrs([]slog.Attr) slog.Handler       { return b }
func (b *betweenTx) WithGroup(string) slog.Handler            { return b }
func (b *betweenTx) Handle(_ context.Context, r slog.Record) error {
	if r.Message == b.msg && !b.in && b.fn != nil {
		b.in = true
		b.n++
		b.fn(b.n)
		b.in = false
	}
	return nil
}

// Between every two transactions of a sweep (Absolute and Sliding tokens,
// old-format and new, some alive only by a use held in memory), every
// reader and writer sees a consistent store: an expired token never
// validates, a live one always does, one alive by a use not yet written is
// not swept, a revoked one never validates again; a flush, a Rotate with a
// grace, a RevokeSubject and an Issue run meanwhile; the file checks clean
// and the counts agree after.
func TestDB_Sweep_CallsBetweenTransactions(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now, clock := settableClock(t0)
	h := &betweenTx{msg: "tokenstore: sweep transaction"}
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: clock, Logger: slog.New(h)})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()

	type tok struct {
		token   string
		id      uuid.UUID
		alive   bool // by the sweep's clock
		revoked bool
		rotated bool // rotated away: a use would be a reuse, which revokes its family
	}
	var toks []*tok
	issue := func(n int, subject string, p Policy, alive bool) []*tok {
		var out []*tok
		for range n {
			s, info, err := db.Issue(ctx, subject, WithPolicy(p))
			require.NoError(t, err)
			out = append(out, &tok{token: s, id: info.ID, alive: alive})
		}
		toks = append(toks, out...)
		return out
	}
	old := func(n int, subject string, p Policy, alive bool) []*tok {
		var out []*tok
		for range n {
			s, hh := db.format.generateV1()
			_, _, rec, err := db.newRecord(subject, p, nil)
			require.NoError(t, err)
			require.NoError(t, db.commit.run(func(tx *bolt.Tx) error { return putRecord(tx, hh, &rec) }))
			out = append(out, &tok{token: s, id: rec.id, alive: alive})
		}
		toks = append(toks, out...)
		return out
	}
	issue(6, "a", Absolute(time.Hour), false)
	usedB := issue(6, "b", Sliding(time.Hour, 0), true)
	issue(6, "c", Sliding(time.Hour, 0), false)
	live := issue(4, "d", Absolute(48*time.Hour), true)
	old(4, "o", Sliding(time.Hour, 0), false)
	usedO := old(4, "o", Sliding(time.Hour, 0), true)
	revokeAll := issue(3, "e", Absolute(48*time.Hour), true)
	now.Add((50 * time.Minute).Milliseconds())
	for _, tk := range append(usedB, usedO...) {
		_, err := db.Validate(ctx, tk.token) // in memory only
		require.NoError(t, err)
	}
	now.Add((20 * time.Minute).Milliseconds()) // 70 min: every 1h token is due by its filed deadline

	check := func(when string) {
		for i, tk := range toks {
			if tk.rotated {
				continue
			}
			_, err := db.Validate(ctx, tk.token)
			if tk.alive && !tk.revoked {
				require.NoError(t, err, "%s: token %d", when, i)
				continue
			}
			require.Error(t, err, "%s: token %d validated", when, i)
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExpired) {
				t.Fatalf("%s: token %d: %v", when, i, err)
			}
			_, err = db.Lookup(ctx, tk.token)
			require.Error(t, err, "%s: token %d looked up", when, i)
			if _, err = db.Get(ctx, tk.id); !errors.Is(err, ErrNotFound) {
				require.ErrorIs(t, err, ErrExpired, "%s: token %d: Get", when, i)
			}
		}
		require.NoError(t, db.ForEach(ctx, func(Info) error { return nil }), when)
		for _, s := range []string{"a", "b", "c", "d", "o"} {
			_, err := db.List(ctx, s)
			require.NoError(t, err, when)
		}
	}
	var rotated string
	revokedByID := 0
	h.fn = func(n int) {
		when := fmt.Sprintf("after sweep transaction %d", n)
		check(when)
		switch n {
		case 1:
			require.NoError(t, db.Flush(ctx))
		case 2:
			require.NoError(t, db.Revoke(ctx, live[0].token))
			live[0].revoked = true
		case 3:
			next, _, err := db.Rotate(ctx, usedB[0].token, WithGrace(time.Minute))
			require.NoError(t, err, when)
			rotated = next
			usedB[0].rotated = true
			toks = append(toks, &tok{token: next, alive: true})
		case 4:
			n, err := db.RevokeSubject(ctx, "e")
			require.NoError(t, err)
			assert.Equal(t, 3, n)
			for _, tk := range revokeAll {
				tk.revoked = true
			}
		case 5:
			issue(2, "a", Absolute(time.Hour), true)
		}
		// An expired token, half swept or not yet: revoked by its id
		// (the last first: the passes have not reached some of them).
		for i := len(toks) - 1; i >= 0; i-- {
			if tk := toks[i]; !tk.alive && !tk.revoked && !tk.rotated {
				err := db.RevokeID(ctx, tk.id)
				if err == nil {
					revokedByID++
				} else {
					require.ErrorIs(t, err, ErrNotFound, when)
				}
				tk.revoked = true
				break
			}
		}
		problems, err := db.Check(ctx)
		require.NoError(t, err)
		require.Empty(t, problems, when)
	}
	db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	h.fn = nil
	assert.Greater(t, h.n, 5, "the calls ran between transactions")
	assert.Equal(t, 16-revokedByID, n, "a, c and the unused old ones, but those revoked first")
	t.Logf("%d expired tokens revoked by id before the sweep deleted their record", revokedByID)
	check("after the sweep")
	require.NotEmpty(t, rotated)
	require.NoError(t, db.Flush(ctx))
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	count := 0
	require.NoError(t, db.ForEach(ctx, func(Info) error { count++; return nil }))
	st := db.Stats()
	assert.Equal(t, int64(count), st.Tokens)
	assert.Equal(t, uint64(16-revokedByID), st.Swept)
	fi, err := db.FileInfo(ctx)
	require.NoError(t, err)
	t.Logf("%d tokens, file info %+v", count, fi)
}

// Close between any two transactions of a caller's Sweep (the background
// sweeper is stopped by Close; a caller's is not): the Sweep ends with
// ErrClosed, Close writes the uses held in memory (a token alive only by
// one stays alive), no goroutine is left, and the reopened file checks
// clean and is swept whole by the next sweep.
func TestDB_Sweep_CloseBetweenTransactions(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	defer goleak.VerifyNone(t, ignore)
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	for cut := 1; ; cut++ {
		now, clock := settableClock(t0)
		path := filepath.Join(dir, fmt.Sprintf("cut-%d.db", cut))
		h := &betweenTx{msg: "tokenstore: sweep transaction"}
		db, err := Open(path, &Options{SweepInterval: -1, TouchInterval: 24 * time.Hour, Now: clock, Logger: slog.New(h)})
		require.NoError(t, err)
		var reqs []IssueRequest
		for i := range 24 {
			p := Absolute(time.Hour)
			if i%3 == 1 {
				p = Sliding(time.Hour, 0)
			}
			reqs = append(reqs, IssueRequest{Subject: fmt.Sprintf("user-%d", i%4), Policy: p})
		}
		issued, err := db.IssueBatch(ctx, reqs)
		require.NoError(t, err)
		now.Add((50 * time.Minute).Milliseconds())
		for i, is := range issued {
			if i%3 == 1 {
				_, err := db.Validate(ctx, is.Token) // in memory only
				require.NoError(t, err)
			}
		}
		now.Add((20 * time.Minute).Milliseconds())
		h.fn = func(n int) {
			if n == cut {
				require.NoError(t, db.Close())
			}
		}
		db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
		n1, err := db.Sweep(ctx)
		finished := err == nil
		if !finished {
			require.ErrorIs(t, err, ErrClosed, "cut %d", cut)
		}
		require.NoError(t, db.Close())

		db, err = Open(path, &Options{SweepInterval: -1, Now: clock})
		require.NoError(t, err)
		problems, err := db.Check(ctx)
		require.NoError(t, err)
		require.Empty(t, problems, "cut %d", cut)
		for i, is := range issued {
			_, err := db.Validate(ctx, is.Token)
			if i%3 == 1 {
				require.NoError(t, err, "cut %d: token %d, alive by a use Close wrote", cut, i)
			} else {
				require.Error(t, err, "cut %d: token %d", cut, i)
			}
		}
		n2, err := db.Sweep(ctx)
		require.NoError(t, err)
		problems, err = db.Check(ctx)
		require.NoError(t, err)
		require.Empty(t, problems)
		assert.Equal(t, 16, n1+n2, "cut %d", cut)
		assert.Equal(t, int64(8), db.Stats().Tokens)
		require.NoError(t, db.Close())
		if finished {
			break
		}
	}
}
