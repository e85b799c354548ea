package tokenstoretest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func testLimit(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.MaxTokensPerSubject = 3 })
	var tokens []string
	for range 3 {
		token, _ := e.issue("user")
		tokens = append(tokens, token)
	}
	before := e.s.Stats()
	token, _, err := e.s.Issue(e.ctx, "user")
	e.errIs(err, tokenstore.ErrTokenLimit, "the fourth token")
	assert.Empty(t, token)
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 3, "nothing stored")
	after := e.s.Stats()
	assert.Equal(t, before.Tokens, after.Tokens, "Stats.Tokens unchanged")
	assert.Equal(t, before.Issued, after.Issued, "Stats.Issued unchanged")

	_, _, err = e.s.Issue(e.ctx, "user", tokenstore.WithPolicy(tokenstore.Absolute(hour)))
	e.errIs(err, tokenstore.ErrTokenLimit, "whatever the policy")

	e.issue("other") // the limit is per subject

	require.NoError(t, e.s.Revoke(e.ctx, tokens[0]))
	e.issue("user") // a revoked token frees its place
	_, _, err = e.s.Issue(e.ctx, "user")
	e.errIs(err, tokenstore.ErrTokenLimit)

	// Rotate replaces a token: it does not need a free place.
	next, _, err := e.s.Rotate(e.ctx, tokens[1])
	require.NoError(t, err, "Rotate at the limit")
	e.secrets.add(next)
	list, err = e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 3)

	n, err := e.s.RevokeSubject(e.ctx, "user")
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	for range 3 {
		e.issue("user")
	}
}

func testLimitExpired(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) {
		o.MaxTokensPerSubject = 2
		o.Policy = tokenstore.Absolute(hour)
	})
	e.issue("user")
	e.clock.Advance(30 * time.Minute)
	e.issue("user")
	_, _, err := e.s.Issue(e.ctx, "user")
	e.errIs(err, tokenstore.ErrTokenLimit)

	e.clock.Advance(30*time.Minute - time.Millisecond)
	_, _, err = e.s.Issue(e.ctx, "user")
	e.errIs(err, tokenstore.ErrTokenLimit, "1ms before the first token's deadline")

	e.clock.Advance(time.Millisecond)
	e.issue("user") // the first token expired (not swept): it does not count
	_, _, err = e.s.Issue(e.ctx, "user")
	e.errIs(err, tokenstore.ErrTokenLimit)

	// A sliding token kept alive by use does count.
	e2 := newEnv(t, open, func(o *Config) {
		o.MaxTokensPerSubject = 1
		o.Policy = tokenstore.Sliding(hour, 0)
		o.TouchInterval = 24 * hour // the use may stay in memory
	})
	token, _ := e2.issue("user")
	e2.clock.Advance(50 * time.Minute)
	_, err = e2.s.Validate(e2.ctx, token)
	require.NoError(t, err)
	e2.clock.Advance(50 * time.Minute)
	_, _, err = e2.s.Issue(e2.ctx, "user")
	e2.errIs(err, tokenstore.ErrTokenLimit, "alive by its last use")
	e2.clock.Advance(10 * time.Minute)
	e2.issue("user")
}

func testLimitConcurrent(t *testing.T, open Opener) {
	const limit, workers, each = 5, 16, 4
	e := newEnv(t, open, func(o *Config) { o.MaxTokensPerSubject = limit })
	var ok, refused, other atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range workers {
		wg.Go(func() {
			<-start
			for range each {
				token, _, err := e.s.Issue(e.ctx, "user")
				switch {
				case err == nil:
					e.secrets.add(token)
					ok.Add(1)
				case errors.Is(err, tokenstore.ErrTokenLimit):
					refused.Add(1)
				default:
					other.Add(1)
					t.Errorf("Issue: %v", err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int64(limit), ok.Load(), "exactly the limit succeeded")
	assert.Equal(t, int64(workers*each-limit), refused.Load())
	assert.Zero(t, other.Load())
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, limit)
	assert.Equal(t, int64(limit), e.s.Stats().Tokens)
}
