package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
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
	primary := ownRedis(t, "--repl-diskless-sync-delay", "0")
	replica := ownRedis(t, "--replicaof", hostPort(primary.Addr))
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
