package tokenstore_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

const (
	mwReusedDescription = "the token was replaced and used again; every token of its session is revoked: authenticate again"
	mwReusedChallenge   = `Bearer realm="test", error="invalid_token", error_description="` + mwReusedDescription + `"`
)

// TestMiddleware_ReusedMapping: a Validator's error that wraps ErrReused
// (as a store's does, with its context) is a 401 invalid_token whose
// description sends the client back to authenticate, not a 500; the log
// says why, at Debug, without the token, and an error handler gets the
// store's error for errors.Is.
func TestMiddleware_ReusedMapping(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice")
	other, _ := e.issue(t, "bob")
	reused := mwValidatorFunc(func(ctx context.Context, tok string) (tokenstore.Info, error) {
		if tok == token {
			return tokenstore.Info{}, fmt.Errorf("tokenstore: validate: family 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d: %w", tokenstore.ErrReused)
		}
		return e.db.Validate(ctx, tok)
	})

	srv := e.serve(t, reused)
	r := e.get(t, srv, "/", mwBearer(token))
	mwAssertRefused(t, r, 401, mwReusedChallenge, "invalid_token", mwReusedDescription)
	assert.Equal(t, 200, e.get(t, srv, "/", mwBearer(other)).status, "other tokens pass through the same Validator")
	logs := e.logs.String()
	assert.Contains(t, logs, `"level":"DEBUG"`)
	assert.Contains(t, logs, "used again; its family is revoked", "the log says why")
	assert.NotContains(t, logs, `"level":"ERROR"`, "a reused token is the client's, not a server failure")

	var (
		mu  sync.Mutex
		got []error
	)
	srv = e.serve(t, reused, tokenstore.WithErrorHandler(func(w http.ResponseWriter, _ *http.Request, status int, code, _ string, err error) {
		mu.Lock()
		got = append(got, err)
		mu.Unlock()
		w.WriteHeader(status)
		_, _ = fmt.Fprint(w, code)
	}))
	r = e.get(t, srv, "/", mwBearer(token))
	assert.Equal(t, 401, r.status)
	assert.Equal(t, "invalid_token", r.body)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 1)
	assert.ErrorIs(t, got[0], tokenstore.ErrReused)
}
