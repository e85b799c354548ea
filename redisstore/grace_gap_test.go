package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	internalbackend "github.com/tokenstore/tokenstore/internal/backend"
	"github.com/tokenstore/tokenstore/redisstore"
)

// TestGrace_FirstUseNotRecordedFailsClosed: a successor's first use must
// end its predecessor's grace by a write. Where Redis does not take that
// write (here a replica: READONLY), the successor is not answered valid
// (it was, and the old token's grace stayed open, to reopen under a clock
// set back): the error wraps the refusal's sentinel (ErrReadOnly) and
// says the grace could not be ended. Every way a use is checked: read
// first, write first (TouchInterval < 0), Lookup, and again while the
// store has stopped trying use writes after a refusal. On the primary the
// same use ends the grace, and the old token is then a reuse.
func TestGrace_FirstUseNotRecordedFailsClosed(t *testing.T) {
	primary, replica := ownReplicated(t)
	ctx := context.Background()
	for _, touch := range []time.Duration{time.Minute, -1} {
		t.Run(fmt.Sprintf("TouchInterval=%v", touch), func(t *testing.T) {
			clk := newClock()
			prefix := uniquePrefix()
			o := redisstore.Options{Now: clk.Now, KeyPrefix: prefix, TouchInterval: touch}
			po, ro := o, o
			p := storeOn(t, primary.Addr, &po)
			r := storeOn(t, replica.Addr, &ro)
			a, _, err := p.Issue(ctx, "user")
			require.NoError(t, err)
			clk.Advance(time.Minute)
			b, _, err := p.Rotate(ctx, a, tokenstore.WithGrace(5*time.Minute))
			require.NoError(t, err)
			other, _, err := p.Issue(ctx, "other")
			require.NoError(t, err)
			waitReplicated(t, primary.Addr, replica.Addr)
			clk.Advance(time.Second)

			for i, use := range []string{"Validate", "Lookup", "Validate"} { // the last two while writes are refused
				if use == "Validate" {
					_, err = r.Validate(ctx, b)
				} else {
					_, err = r.Lookup(ctx, b)
				}
				require.ErrorIs(t, err, tokenstore.ErrReadOnly, "%s %d of the successor on a replica: not answered valid", use, i)
				assert.Contains(t, err.Error(), "grace", "%s %d: says the grace could not be ended", use, i)
				assert.NotContains(t, err.Error(), hashHex(b))
				assert.Equal(t, 1, strings.Count(err.Error(), "redisstore:")+strings.Count(err.Error(), "tokenstore:"), "the package named once: %q", err)
			}
			_, err = r.Validate(ctx, other)
			require.NoError(t, err, "other tokens still validate on the replica")
			_, err = p.Validate(ctx, a)
			require.NoError(t, err, "the grace was not ended, and no use of the successor was answered")

			_, err = p.Validate(ctx, b)
			require.NoError(t, err, "on the primary the first use is recorded")
			_, err = p.Validate(ctx, a)
			require.ErrorIs(t, err, tokenstore.ErrReused, "the grace is over")
		})
	}
}

// TestGrace_FirstUseHeldFailsClosed: a Redis holding writes (CLIENT PAUSE
// WRITE, as FAILOVER does) holds the write that ends a grace: after the
// 250 ms bound, the successor's first use is refused as a timeout (which
// the middleware answers 503), not answered valid with the grace open.
// The held write, run when the pause ends, ends the grace.
func TestGrace_FirstUseHeldFailsClosed(t *testing.T) {
	srv := ownRedis(t)
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	for _, touch := range []time.Duration{time.Minute, -1} {
		t.Run(fmt.Sprintf("TouchInterval=%v", touch), func(t *testing.T) {
			clk := newClock()
			prefix := uniquePrefix()
			bare := redis.NewClient(&redis.Options{Addr: srv.Addr})
			t.Cleanup(func() { _ = bare.Close() })
			s, err := redisstore.New(bare, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, SweepInterval: -1, TouchInterval: touch})
			require.NoError(t, err)
			a, _, err := s.Issue(ctx, "user")
			require.NoError(t, err)
			b, _, err := s.Rotate(ctx, a, tokenstore.WithGrace(5*time.Minute))
			require.NoError(t, err)
			// Load every script a first use runs (a NOSCRIPT answered
			// after the pause would find the call's context over, and
			// its EVAL never sent).
			for _, use := range []func(string) error{
				func(tok string) error { _, err := s.Lookup(ctx, tok); return err },
				func(tok string) error { _, err := s.Validate(ctx, tok); return err },
			} {
				x, _, err := s.Issue(ctx, "loader")
				require.NoError(t, err)
				y, _, err := s.Rotate(ctx, x, tokenstore.WithGrace(5*time.Minute))
				require.NoError(t, err)
				require.NoError(t, use(y))
			}
			clk.Advance(time.Second)

			require.NoError(t, raw.Do(ctx, "CLIENT", "PAUSE", 2000, "WRITE").Err())
			start := time.Now()
			_, err = s.Validate(ctx, b)
			took := time.Since(start)
			require.Error(t, err, "not answered valid while its grace-ending write is held")
			assert.True(t, internalbackend.IsTimeout(err), "a timeout: %v", err)
			assert.Contains(t, err.Error(), "grace")
			assert.Less(t, took, 1500*time.Millisecond, "bounded by the write's 250 ms, twice at most")
			require.NoError(t, raw.Do(ctx, "CLIENT", "UNPAUSE").Err())
			require.NoError(t, s.Close()) // waits for the held writes

			later := storeOn(t, srv.Addr, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
			_, err = later.Validate(ctx, a)
			require.ErrorIs(t, err, tokenstore.ErrReused, "the held write, run late, ended the grace")
		})
	}
}
