package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

// reusingStore is a real store whose Lookup and Validate refuse the tokens
// marked reused with an error wrapping tokenstore.ErrReused, as a store's
// own does for a rotated-away token presented after its grace.
type reusingStore struct {
	tokenstore.Store
	mu     sync.Mutex
	reused map[string]bool
}

func (s *reusingStore) mark(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reused[token] = true
}

func (s *reusingStore) check(token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reused[token] {
		return fmt.Errorf("tokenstore: lookup: family 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d: %w", tokenstore.ErrReused)
	}
	return nil
}

func (s *reusingStore) Lookup(ctx context.Context, token string) (tokenstore.Info, error) {
	if err := s.check(token); err != nil {
		return tokenstore.Info{}, err
	}
	return s.Store.Lookup(ctx, token)
}

func (s *reusingStore) Validate(ctx context.Context, token string) (tokenstore.Info, error) {
	if err := s.check(token); err != nil {
		return tokenstore.Info{}, err
	}
	return s.Store.Validate(ctx, token)
}

// TestReused_Mapping: each route answers a reused token as its protocol
// says: the JSON API 410 "reused" (which the Client maps back to
// ErrReused), RFC 7662 {"active":false}, RFC 7009 200, the page a
// sentence that says the family is revoked.
func TestReused_Mapping(t *testing.T) {
	var rs *reusingStore
	e := newEnv(t, func(t *testing.T, now func() time.Time) tokenstore.Store {
		rs = &reusingStore{Store: backends[0].open(t, now), reused: map[string]bool{}}
		return rs
	}, nil)
	tok := e.issue("alice")
	rs.mark(tok)

	res := e.do(req{method: "POST", path: "/admin/api/tokens/inspect", token: e.admin, ctype: "application/json", body: `{"token":"` + tok + `"}`})
	assert.Equal(t, http.StatusGone, res.status, res.body)
	assert.Equal(t, "reused", res.errorCode(t))
	assert.Contains(t, res.body, "every token of its family is now revoked")

	res = e.do(req{method: "POST", path: "/admin/api/tokens/revoke", token: e.admin, ctype: "application/json", body: `{"token":"` + tok + `"}`})
	assert.Equal(t, http.StatusGone, res.status, "not 404: the family was revoked")
	assert.Equal(t, "reused", res.errorCode(t))

	res = e.do(req{method: "POST", path: "/admin/introspect", token: e.admin, ctype: formType, body: form("token", tok)})
	require.Equal(t, http.StatusOK, res.status, res.body)
	assert.JSONEq(t, `{"active":false}`, res.body)

	res = e.do(req{method: "POST", path: "/admin/revoke", token: e.admin, ctype: formType, body: form("token", tok)})
	assert.Equal(t, http.StatusOK, res.status, "RFC 7009 §2.2: an invalid token is no error")

	c := &admin.Client{BaseURL: e.srv.URL + "/admin", Token: e.admin}
	_, err := c.Lookup(context.Background(), tok)
	assert.ErrorIs(t, err, tokenstore.ErrReused)
	assert.NotContains(t, err.Error(), tok)

	s := e.session()
	s.login(e.admin)
	s.get("/admin/")
	res = s.post("/admin/token", form("csrf_token", s.csrf, "token", tok), nil)
	require.Equal(t, http.StatusOK, res.status, res.body)
	assert.Contains(t, res.body, "every token of its family is now revoked")

	assert.Equal(t, http.StatusUnauthorized, e.hello(tok), "the middleware refuses it")
	assert.NotContains(t, e.logs.String(), "level=ERROR", "a reused token is no server failure")
}
