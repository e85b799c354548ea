package redisstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
)

// TestReadOnlyReplica_Reuse: a rotated-away token presented after its
// grace to a store on a read-only replica is refused as reused
// (ErrReused, a 401 from the middleware, not the 500 an ErrReadOnly got),
// although the replica cannot revoke the family: the failed revocation is
// logged with the family, never the token. The store keeps the reuse in
// memory, as the file store's read-only mode does, so a clock set back
// into the grace does not make the old token work there again; once the
// store reaches a primary, the next presentation revokes the family.
func TestReadOnlyReplica_Reuse(t *testing.T) {
	primary, replica := ownReplicated(t)
	ctx := context.Background()
	clk := newClock()
	prefix := uniquePrefix()
	p := storeOn(t, primary.Addr, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
	a, aInfo, err := p.Issue(ctx, "user")
	require.NoError(t, err)
	b, _, err := p.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	other, _, err := p.Issue(ctx, "other")
	require.NoError(t, err)
	waitReplicated(t, primary.Addr, replica.Addr)

	inGrace := clk.Now()
	for _, touch := range []time.Duration{0, -1} { // read first; write first
		var logs bytes.Buffer
		r := storeOn(t, replica.Addr, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, TouchInterval: touch,
			Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		_, err = r.Validate(ctx, a)
		require.NoError(t, err, "touch %v: within its grace", touch)

		clk.Advance(2 * time.Minute) // past the grace
		_, reuseErr := r.Validate(ctx, a)
		require.ErrorIs(t, reuseErr, tokenstore.ErrReused, "touch %v: refused as reused on a replica", touch)
		assert.NotErrorIs(t, reuseErr, tokenstore.ErrReadOnly, "one sentinel")
		assert.Contains(t, reuseErr.Error(), "not revoked", "says the family could not be revoked")
		_, err = r.Lookup(ctx, a)
		require.ErrorIs(t, err, tokenstore.ErrReused, "Lookup too")
		_, _, err = r.Rotate(ctx, a)
		require.ErrorIs(t, err, tokenstore.ErrReused, "Rotate too")

		clk.Set(inGrace) // set back into the grace
		_, err = r.Validate(ctx, a)
		require.ErrorIs(t, err, tokenstore.ErrReused, "touch %v: a clock set back does not reopen the grace on this store", touch)
		clk.Advance(2 * time.Minute)

		_, err = r.Validate(ctx, other)
		require.NoError(t, err, "other tokens are unaffected")

		out := logs.String()
		assert.Contains(t, out, `"level":"WARN"`)
		assert.Contains(t, out, "family not revoked")
		assert.Contains(t, out, `"family":"`+aInfo.ID.String()+`"`)
		assert.Contains(t, out, "READONLY", "the log names Redis's refusal")
		// Four reuses (Validate, Lookup, Rotate, Validate with the clock
		// set back): the second and third fall within the first's minute,
		// the fourth's clock set back ends it.
		assert.Equal(t, 2, strings.Count(out, "family not revoked"), "touch %v: rate-limited per family", touch)
		assert.Equal(t, 1, strings.Count(out, `"suppressed":2`), "touch %v: the lines held back, counted", touch)
		for _, secret := range []string{a, b, hashHex(a), hashHex(b), a[4:12]} {
			assert.NotContains(t, out, secret)
			assert.NotContains(t, reuseErr.Error(), secret)
		}

		// Through the middleware: 401, not 500.
		srv := httptest.NewServer(tokenstore.Middleware(r)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+a)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		srv.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "touch %v", touch)
		clk.Set(inGrace) // back for the next store
	}

	// On the primary the reuse revokes the family.
	clk.Advance(2 * time.Minute)
	_, err = p.Validate(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	_, err = p.Validate(ctx, b)
	require.ErrorIs(t, err, tokenstore.ErrNotFound, "the family is revoked where Redis takes writes")
}

// TestReadOnlyReplica_ReuseMemoryBounded: a store that cannot revoke a
// reused token's family (a replica) keeps the reuse in memory; it kept
// every one, for good, so whoever can rotate tokens (any logged-in user,
// on the primary) and then replay the rotated-away ones on an instance
// reading a replica grew that instance's memory without bound, one entry
// per replayed token. It keeps at most maxRememberedReuses now; a reuse
// it forgot is still refused as reused by its read (its grace is over),
// and remembered again.
func TestReadOnlyReplica_ReuseMemoryBounded(t *testing.T) {
	const limit, replayed = 4, 20
	t.Cleanup(redisstore.SetMaxRememberedReuses(limit))
	primary, replica := ownReplicated(t)
	ctx := context.Background()
	clk := newClock()
	prefix := uniquePrefix()
	p := storeOn(t, primary.Addr, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
	var old []string
	tok, _, err := p.Issue(ctx, "attacker")
	require.NoError(t, err)
	for range replayed { // a chain: each rotation leaves a tombstone
		next, _, err := p.Rotate(ctx, tok)
		require.NoError(t, err)
		old, tok = append(old, tok), next
	}
	waitReplicated(t, primary.Addr, replica.Addr)

	r := storeOn(t, replica.Addr, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
	for round := range 2 {
		for i, a := range old {
			_, err := r.Validate(ctx, a)
			require.ErrorIs(t, err, tokenstore.ErrReused, "round %d, token %d", round, i)
			assert.LessOrEqual(t, redisstore.RememberedReuses(r), limit, "round %d, token %d: memory bounded", round, i)
		}
	}
	assert.Equal(t, limit, redisstore.RememberedReuses(r), "the latest reuses are remembered")
}
