package tokenstoretest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func testSweep(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	n, err := e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "an empty store")

	type tok struct {
		token string
		info  tokenstore.Info
	}
	issue := func(p tokenstore.Policy) tok {
		token, info := e.issue("user", tokenstore.WithPolicy(p))
		return tok{token, info}
	}
	var short []tok // dead by +2h
	for range 3 {
		short = append(short, issue(tokenstore.Absolute(hour)))
	}
	short = append(short, issue(tokenstore.Absolute(2*hour))) // exactly at its deadline at +2h
	long := []tok{
		issue(tokenstore.Absolute(2*hour + time.Millisecond)),
		issue(tokenstore.Absolute(3 * hour)),
	}
	slid := issue(tokenstore.Sliding(hour, 0))
	long = append(long, slid)
	revoked := issue(tokenstore.Absolute(hour))
	require.NoError(t, e.s.Revoke(e.ctx, revoked.token))

	e.clock.Advance(50 * time.Minute)
	_, err = e.s.Validate(e.ctx, slid.token)
	require.NoError(t, err)
	e.clock.Advance(50 * time.Minute)
	_, err = e.s.Validate(e.ctx, slid.token) // now alive until +2h40m
	require.NoError(t, err)

	e.clock.Advance(20 * time.Minute) // +2h
	before := e.s.Stats()
	n, err = e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, len(short), n, "exactly the expired tokens, the one at its deadline included")
	after := e.s.Stats()
	assert.Equal(t, before.Swept+uint64(len(short)), after.Swept, "Stats.Swept")
	assert.Equal(t, int64(len(long)), after.Tokens, "Stats.Tokens")

	for i, x := range short {
		_, err := e.s.Validate(e.ctx, x.token)
		e.errIs(err, tokenstore.ErrNotFound, "swept token %d", i)
		_, err = e.s.Get(e.ctx, x.info.ID)
		e.errIs(err, tokenstore.ErrNotFound, "Get of swept token %d", i)
		e.errIs(e.s.RevokeID(e.ctx, x.info.ID), tokenstore.ErrNotFound, "RevokeID of swept token %d", i)
	}
	for i, x := range long {
		_, err := e.s.Lookup(e.ctx, x.token)
		require.NoError(t, err, "live token %d survives the sweep", i)
	}

	n, err = e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "a second sweep finds nothing")

	e.clock.Advance(hour) // +3h: all of them
	n, err = e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, len(long), n)
	assert.Zero(t, e.s.Stats().Tokens)
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list)

	// The subject index was cleaned too: a new token lists alone.
	_, info := e.issue("user")
	list, err = e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, info.ID, list[0].ID)
	n, err = e.s.RevokeSubject(e.ctx, "user")
	require.NoError(t, err)
	assert.Equal(t, 1, n, "RevokeSubject counts no swept token")
}

func testSweepKeepsSlid(t *testing.T, open Opener) {
	// A long TouchInterval: the use below may live only in memory, and the
	// sweep must still see it.
	e := newEnv(t, open, func(o *Config) {
		o.Policy = tokenstore.Sliding(hour, 0)
		o.TouchInterval = 24 * hour
	})
	var tokens []string
	for range 20 {
		token, _ := e.issue("user")
		tokens = append(tokens, token)
	}
	e.clock.Advance(59 * time.Minute)
	for _, token := range tokens[:10] {
		_, err := e.s.Validate(e.ctx, token)
		require.NoError(t, err)
	}
	e.clock.Advance(time.Minute) // +1h: the unused half is due; the used half lives to +1h59m
	n, err := e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 10, n)
	var slid time.Time
	for i, token := range tokens[:10] {
		// A second use, a minute after the first: it may be written or
		// not (the stored use may lag by TouchInterval), but the deadline
		// Validate reports is the one the sweep keeps.
		got, err := e.s.Validate(e.ctx, token)
		require.NoError(t, err, "used token %d survives", i)
		if i == 0 {
			slid = got.ExpiresAt
		}
		timeEq(t, slid, got.ExpiresAt, "the ten tokens were used alike")
	}
	require.True(t, slid.After(e.clock.Now().Add(58*time.Minute)), "slid by its uses: %v", slid)
	e.clock.Advance(slid.Sub(e.clock.Now()) - time.Millisecond)
	n, err = e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "1ms before the slid deadline")
	e.clock.Advance(time.Millisecond)
	n, err = e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 10, n, "at the slid deadline")
}

func testStats(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	s0 := e.s.Stats()
	assert.Zero(t, s0.Tokens, "an empty store")

	a, info := e.issue("user")
	b, _ := e.issue("user")
	c, _ := e.issue("other", tokenstore.WithPolicy(tokenstore.Absolute(2*hour)))
	s := e.s.Stats()
	assert.Equal(t, s0.Issued+3, s.Issued, "Issued")
	assert.Equal(t, int64(3), s.Tokens, "Tokens")

	for range 2 {
		_, err := e.s.Validate(e.ctx, a)
		require.NoError(t, err)
	}
	_, err := e.s.Lookup(e.ctx, a)
	require.NoError(t, err)
	_, err = e.s.Get(e.ctx, info.ID)
	require.NoError(t, err)
	_, err = e.s.Validate(e.ctx, "tks_nope")
	require.ErrorIs(t, err, tokenstore.ErrMalformed)
	_, err = e.s.Lookup(e.ctx, "")
	require.ErrorIs(t, err, tokenstore.ErrMalformed)
	f, err := tokenstore.NewFormat("")
	require.NoError(t, err)
	unknown, _ := f.Generate()
	_, err = e.s.Validate(e.ctx, unknown)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)

	s1 := e.s.Stats()
	assert.Equal(t, s.Validated+2, s1.Validated, "Validated")
	assert.Equal(t, s.Lookups+2, s1.Lookups, "Lookups (Lookup and Get)")
	assert.Equal(t, s.RejectedMalformed+2, s1.RejectedMalformed, "RejectedMalformed")
	assert.Equal(t, s.RejectedNotFound+1, s1.RejectedNotFound, "RejectedNotFound")

	e.clock.Advance(hour)
	_, err = e.s.Validate(e.ctx, b)
	require.ErrorIs(t, err, tokenstore.ErrExpired)
	s2 := e.s.Stats()
	assert.Equal(t, s1.RejectedExpired+1, s2.RejectedExpired, "RejectedExpired")
	assert.Equal(t, s1.Validated, s2.Validated, "a refused Validate is not counted as validated")

	next, _, err := e.s.Rotate(e.ctx, c)
	require.NoError(t, err)
	e.secrets.add(next)
	s3 := e.s.Stats()
	assert.Equal(t, s2.Issued+1, s3.Issued, "Rotate issues")
	assert.Equal(t, s2.Revoked+1, s3.Revoked, "and revokes")
	assert.Equal(t, int64(3), s3.Tokens)

	require.NoError(t, e.s.Revoke(e.ctx, next))
	n, err := e.s.Sweep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	s4 := e.s.Stats()
	assert.Equal(t, s3.Revoked+1, s4.Revoked, "Revoked")
	assert.Equal(t, s3.Swept+2, s4.Swept, "Swept")
	assert.Zero(t, s4.Tokens)

	e.issue("user")
	e.issue("user")
	_, err = e.s.RevokeSubject(e.ctx, "user")
	require.NoError(t, err)
	s5 := e.s.Stats()
	assert.Equal(t, s4.Revoked+2, s5.Revoked, "RevokeSubject counts each token")
	assert.Zero(t, s5.Tokens)
}

func testContextCancelled(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	token, info := e.issue("user")

	for name, ctx := range map[string]context.Context{
		"cancelled": cancelled(),
		"deadline":  expired(),
	} {
		want := context.Canceled
		if name == "deadline" {
			want = context.DeadlineExceeded
		}
		t.Run(name, func(t *testing.T) {
			calls := map[string]func() error{
				"Issue": func() error {
					_, _, err := e.s.Issue(ctx, "user")
					return err
				},
				"Validate": func() error {
					_, err := e.s.Validate(ctx, token)
					return err
				},
				"Lookup": func() error {
					_, err := e.s.Lookup(ctx, token)
					return err
				},
				"Get": func() error {
					_, err := e.s.Get(ctx, info.ID)
					return err
				},
				"List": func() error {
					_, err := e.s.List(ctx, "user")
					return err
				},
				"Revoke":   func() error { return e.s.Revoke(ctx, token) },
				"RevokeID": func() error { return e.s.RevokeID(ctx, info.ID) },
				"RevokeSubject": func() error {
					_, err := e.s.RevokeSubject(ctx, "user")
					return err
				},
				"Rotate": func() error {
					_, _, err := e.s.Rotate(ctx, token)
					return err
				},
				"Sweep": func() error {
					_, err := e.s.Sweep(ctx)
					return err
				},
			}
			for method, call := range calls {
				err := call()
				e.errIs(err, want, method)
			}
		})
	}
	got, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err, "no cancelled call changed anything")
	assert.Equal(t, info.ID, got.ID)
	assert.Equal(t, int64(1), e.s.Stats().Tokens)
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func expired() context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(1, 0))
	cancel() // the deadline has passed already: Err stays DeadlineExceeded
	return ctx
}

func testClose(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	token, info := e.issue("user")
	require.NoError(t, e.s.Close())
	require.NoError(t, e.s.Close(), "a second Close")

	calls := map[string]func() error{
		"Issue": func() error {
			_, _, err := e.s.Issue(e.ctx, "user")
			return err
		},
		"Validate": func() error {
			_, err := e.s.Validate(e.ctx, token)
			return err
		},
		"Lookup": func() error {
			_, err := e.s.Lookup(e.ctx, token)
			return err
		},
		"Get": func() error {
			_, err := e.s.Get(e.ctx, info.ID)
			return err
		},
		"List": func() error {
			_, err := e.s.List(e.ctx, "user")
			return err
		},
		"Revoke":   func() error { return e.s.Revoke(e.ctx, token) },
		"RevokeID": func() error { return e.s.RevokeID(e.ctx, info.ID) },
		"RevokeSubject": func() error {
			_, err := e.s.RevokeSubject(e.ctx, "user")
			return err
		},
		"Rotate": func() error {
			_, _, err := e.s.Rotate(e.ctx, token)
			return err
		},
		"Sweep": func() error {
			_, err := e.s.Sweep(e.ctx)
			return err
		},
	}
	for method, call := range calls {
		e.errIs(call(), tokenstore.ErrClosed, method)
	}
	_ = e.s.Stats() // does not panic after Close
	require.NoError(t, e.s.Close(), "a third Close")
}

// testConcurrent runs 16 goroutines that issue, validate, look up, list,
// rotate, revoke and sweep at once, sharing subjects, while the clock
// moves. Run it with -race.
func testConcurrent(t *testing.T, open Opener) {
	const workers, rounds, subjects = 16, 25, 4
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 2*hour) })
	var wg sync.WaitGroup
	start := make(chan struct{})
	check := func(op string, err error, allowed ...error) {
		if err != nil && !oneOf(err, allowed...) {
			t.Errorf("%s: unexpected error %v", op, err)
		}
		if e.leaks(err) {
			t.Errorf("%s: error leaks a token: %v", op, err)
		}
	}
	for w := range workers {
		wg.Go(func() {
			<-start
			subject := fmt.Sprintf("user-%d", w%subjects)
			for i := range rounds {
				token, info, err := e.s.Issue(e.ctx, subject, tokenstore.WithMetadata(map[string]string{"w": fmt.Sprint(w)}))
				if err != nil {
					t.Errorf("Issue: %v", err)
					return
				}
				e.secrets.add(token)
				// Another worker may revoke the whole subject at any time:
				// ErrNotFound is always a possible answer.
				got, err := e.s.Validate(e.ctx, token)
				check("Validate", err, tokenstore.ErrNotFound)
				if err == nil && (got.ID != info.ID || got.Metadata["w"] != fmt.Sprint(w)) {
					t.Errorf("Validate returned another token's Info")
				}
				_, err = e.s.Lookup(e.ctx, token)
				check("Lookup", err, tokenstore.ErrNotFound)
				_, err = e.s.Get(e.ctx, info.ID)
				check("Get", err, tokenstore.ErrNotFound)
				list, err := e.s.List(e.ctx, subject)
				check("List", err)
				for _, in := range list {
					if in.Subject != subject {
						t.Errorf("List(%q) returned a token of %q", subject, in.Subject)
					}
				}
				switch (w + i) % 6 {
				case 0:
					check("Revoke", e.s.Revoke(e.ctx, token), tokenstore.ErrNotFound)
					_, err = e.s.Validate(e.ctx, token)
					check("Validate after Revoke", err, tokenstore.ErrNotFound)
					if err == nil {
						t.Errorf("Validate after Revoke: no error")
					}
				case 1:
					next, _, err := e.s.Rotate(e.ctx, token)
					check("Rotate", err, tokenstore.ErrNotFound)
					if err == nil {
						e.secrets.add(next)
						_, err = e.s.Validate(e.ctx, next)
						check("Validate rotated", err, tokenstore.ErrNotFound)
						_, err = e.s.Validate(e.ctx, token)
						if !errors.Is(err, tokenstore.ErrReused) {
							t.Errorf("Validate of a rotated-away token: %v, want ErrReused", err)
						}
						if e.leaks(err) {
							t.Errorf("Validate of a rotated-away token: error leaks a token: %v", err)
						}
					}
				case 2:
					check("RevokeID", e.s.RevokeID(e.ctx, info.ID), tokenstore.ErrNotFound)
				case 3:
					if i%5 == 3 {
						_, err := e.s.RevokeSubject(e.ctx, subject)
						check("RevokeSubject", err)
					}
				case 4:
					e.clock.Advance(time.Millisecond)
					_, err := e.s.Sweep(e.ctx)
					check("Sweep", err)
					_ = e.s.Stats()
				case 5:
					_, err := e.s.Validate(e.ctx, token)
					check("Validate", err, tokenstore.ErrNotFound)
					_, err = e.s.Get(e.ctx, uuid.Must(uuid.NewV7()))
					check("Get unknown", err, tokenstore.ErrNotFound)
				}
			}
		})
	}
	close(start)
	wg.Wait()

	// Afterwards the indexes agree: every listed token can be fetched, and
	// Stats counts exactly the listed ones (nothing has expired).
	var listed int64
	for s := range subjects {
		list, err := e.s.List(e.ctx, fmt.Sprintf("user-%d", s))
		require.NoError(t, err)
		listed += int64(len(list))
		for _, in := range list {
			_, err := e.s.Get(e.ctx, in.ID)
			require.NoError(t, err)
		}
	}
	assert.Equal(t, listed, e.s.Stats().Tokens)
	n, err := e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing expired")
}
