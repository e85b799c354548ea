package admin_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

// TestReused_ProtocolCallers, on real stores: what an RFC 7662 or RFC 7009
// caller can do with a rotated-away token. The decision (docs/admin.md):
// the token reaching /introspect or /revoke after its grace is a
// presentation of it, as at the middleware, so its family is revoked
// (RFC 9700 §4.14.2; for /revoke RFC 7009 §2.1 asks as much of a refresh
// token's grant); within its grace it is no reuse and revokes nothing but
// what Revoke does; and a caller the handler does not authorize revokes
// nothing at all, whatever token it sends.
func TestReused_ProtocolCallers(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		user := e.issue("mallory") // authenticated, without the admin scope
		const grace = time.Minute

		introspect := func(caller, token string) response {
			return e.do(req{method: "POST", path: "/admin/introspect", token: caller, ctype: formType, body: form("token", token)})
		}
		revoke := func(caller, token string) response {
			return e.do(req{method: "POST", path: "/admin/revoke", token: caller, ctype: formType, body: form("token", token)})
		}

		// Unauthorized callers: nothing reaches the store's Lookup.
		for name, call := range map[string]func(string, string) response{"introspect": introspect, "revoke": revoke} {
			first := e.issue("alice")
			next, _ := e.rotate(first)
			for _, caller := range []string{"", user} {
				res := call(caller, first)
				assert.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, res.status, name)
			}
			assert.Equal(t, http.StatusOK, e.hello(next), name+": an unauthorized caller revoked a family")
		}
		before := e.store.Stats().RejectedReused

		// Within the grace: introspection is no reuse and revokes nothing.
		first := e.issue("alice")
		next, nextInfo := e.rotate(first, tokenstore.WithGrace(grace))
		var in admin.Introspection
		introspect(e.admin, first).json(t, &in)
		assert.True(t, in.Active, "the old token is active in its grace")
		// By ID: a Validate or Lookup (an introspection) of the successor
		// is its first use, which ends the old token's grace.
		_, err := e.store.Get(context.Background(), nextInfo.ID)
		assert.NoError(t, err)
		assert.Equal(t, before, e.store.Stats().RejectedReused)

		// Within the grace, RFC 7009 revocation is a logout (the successor
		// goes too), not a theft.
		res := revoke(e.admin, first)
		assert.Equal(t, http.StatusOK, res.status, res.body)
		assert.Equal(t, http.StatusUnauthorized, e.hello(next))
		assert.Equal(t, before, e.store.Stats().RejectedReused, "a logout in the grace is no reuse")

		// After the grace, introspection is reuse: inactive, family revoked.
		first = e.issue("alice")
		next, _ = e.rotate(first, tokenstore.WithGrace(grace))
		further, _ := e.rotate(next)
		e.clock.Advance(2 * grace)
		res = introspect(e.admin, first)
		require.Equal(t, http.StatusOK, res.status)
		assert.JSONEq(t, `{"active":false}`, res.body)
		assert.Equal(t, http.StatusUnauthorized, e.hello(further), "the whole family, down the chain")
		assert.Equal(t, before+1, e.store.Stats().RejectedReused)

		// Introspecting the successor is its first use (its holder sent
		// it to the resource server): the old token's grace ends there.
		first = e.issue("alice")
		next, _ = e.rotate(first, tokenstore.WithGrace(grace))
		in = admin.Introspection{}
		introspect(e.admin, next).json(t, &in)
		assert.True(t, in.Active)
		assert.JSONEq(t, `{"active":false}`, introspect(e.admin, first).body, "reuse: the grace ended")
		assert.Equal(t, http.StatusUnauthorized, e.hello(next))

		// After the grace, RFC 7009 revocation: 200, and the family goes.
		first = e.issue("alice")
		next, _ = e.rotate(first)
		res = revoke(e.admin, first)
		assert.Equal(t, http.StatusOK, res.status, res.body)
		assert.Empty(t, res.body)
		assert.Equal(t, http.StatusUnauthorized, e.hello(next))
		assert.Contains(t, e.logs.String(), "level=WARN")
	})
}

// TestReused_AdminCredential: an admin credential rotated away and
// presented after its grace is a refused credential, as at the
// middleware: 401 invalid_token with its challenge on the API and the
// RFC 7662/7009 routes, the login page with a message on the page. It was
// a 410 "reused" without WWW-Authenticate, which the Client (and the
// CLI's --url mode) reported as if the token it asked about were reused.
// The family is revoked all the same.
func TestReused_AdminCredential(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		next, _ := e.rotate(e.admin)
		old := e.admin
		victim := e.issue("alice")

		for _, q := range []req{
			{method: "GET", path: "/admin/api/subjects/alice/tokens", token: old},
			{method: "POST", path: "/admin/introspect", token: old, ctype: formType, body: form("token", victim)},
			{method: "POST", path: "/admin/revoke", token: old, ctype: formType, body: form("token", victim)},
		} {
			res := e.do(q)
			assert.Equal(t, http.StatusUnauthorized, res.status, q.path+": "+res.body)
			assert.Contains(t, res.header.Get("WWW-Authenticate"), `error="invalid_token"`, q.path)
		}
		c := &admin.Client{BaseURL: e.srv.URL + "/admin", Token: old}
		_, err := c.Lookup(context.Background(), victim)
		assert.ErrorIs(t, err, admin.ErrUnauthenticated)
		assert.NotErrorIs(t, err, tokenstore.ErrReused, "the victim token is not what was reused")
		assert.Equal(t, http.StatusOK, e.hello(victim), "nothing the stale credential asked for was done")
		assert.Equal(t, http.StatusUnauthorized, e.hello(next), "its own family is revoked")

		s := e.session()
		s.get("/admin/") // the login form, and its CSRF token
		res := s.post("/admin/login", form("csrf_token", s.csrf, "token", old), nil)
		assert.Equal(t, http.StatusUnauthorized, res.status, res.body)
		assert.Contains(t, res.body, "rotated away")
	})
}
