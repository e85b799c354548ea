package admin_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

const formType = "application/x-www-form-urlencoded"

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

// TestIntrospect follows RFC 7662 §2.
func TestIntrospect(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		tok, info := e.issueInfo("alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)),
			tokenstore.WithMetadata(map[string]string{"scope": "read write", "client_id": "mobile"}))
		validated := e.store.Stats().Validated

		res := e.do(req{method: "POST", path: "/admin/introspect", token: e.admin, ctype: formType,
			body: form("token", tok, "token_type_hint", "access_token")})
		require.Equal(t, http.StatusOK, res.status, res.body)
		var in admin.Introspection
		res.json(t, &in)
		assert.Equal(t, admin.Introspection{
			Active: true, Scope: "read write", ClientID: "mobile", TokenType: "Bearer",
			Exp: info.ExpiresAt.Unix(), Iat: info.CreatedAt.Unix(), Sub: "alice", Jti: info.ID.String(),
			FamilyID: info.FamilyID.String(),
		}, in)
		assert.Equal(t, validated+1, e.store.Stats().Validated, "only the admin token's use is counted")

		// An unknown hint is ignored (§2.1: the server may).
		res = e.do(req{method: "POST", path: "/admin/introspect", token: e.admin, ctype: formType, body: form("token", tok, "token_type_hint", "refresh_token")})
		res.json(t, &in)
		assert.True(t, in.Active)

		// Inactive, for every reason: only {"active":false} (§2.2).
		revoked := forged(t, e)
		expiring := e.issue("bob", tokenstore.WithPolicy(tokenstore.Absolute(time.Minute)))
		e.clock.Advance(2 * time.Minute)
		for name, tk := range map[string]string{"malformed": "tks_nope", "revoked": revoked, "expired": expiring, "another system's": "ghp_" + tok[4:]} {
			res := e.do(req{method: "POST", path: "/admin/introspect", token: e.admin, ctype: formType, body: form("token", tk)})
			require.Equal(t, http.StatusOK, res.status, name)
			assert.Equal(t, "application/json", res.header.Get("Content-Type"))
			assert.JSONEq(t, `{"active":false}`, res.body, name)
		}

		tests := []struct {
			name        string
			method      string
			ctype, body string
			path        string
			status      int
			code        string
		}{
			{"no token", "POST", formType, "", "/admin/introspect", 400, "invalid_request"},
			{"empty token", "POST", formType, form("token", ""), "/admin/introspect", 400, "invalid_request"},
			{"two tokens", "POST", formType, form("token", tok, "token", tok), "/admin/introspect", 400, "invalid_request"},
			{"JSON body", "POST", jsonType, `{"token":"` + tok + `"}`, "/admin/introspect", 400, "invalid_request"},
			{"token in the URL", "POST", formType, form("x", "y"), "/admin/introspect?token=" + url.QueryEscape(tok), 400, "invalid_request"},
			{"GET", "GET", "", "", "/admin/introspect", 405, "method_not_allowed"},
		}
		for _, tt := range tests {
			res := e.do(req{method: tt.method, path: tt.path, token: e.admin, ctype: tt.ctype, body: tt.body})
			assert.Equal(t, tt.status, res.status, "%s: %s", tt.name, res.body)
			assert.Equal(t, tt.code, res.errorCode(t), tt.name)
		}
	})
}

// TestRevocation follows RFC 7009 §2.
func TestRevocation(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		tok := e.issue("alice")
		require.Equal(t, http.StatusOK, e.hello(tok))

		res := e.do(req{method: "POST", path: "/admin/revoke", token: e.admin, ctype: formType, body: form("token", tok, "token_type_hint", "access_token")})
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.Empty(t, res.body)
		assert.Equal(t, http.StatusUnauthorized, e.hello(tok), "refused from the next request on")

		// Invalid tokens do not cause an error (§2.2).
		for name, tk := range map[string]string{"already revoked": tok, "malformed": "tks_nope", "never issued": forged(t, e)} {
			res := e.do(req{method: "POST", path: "/admin/revoke", token: e.admin, ctype: formType, body: form("token", tk)})
			assert.Equal(t, http.StatusOK, res.status, name)
		}

		res = e.do(req{method: "POST", path: "/admin/revoke", token: e.admin, ctype: formType, body: form("token_type_hint", "access_token")})
		assert.Equal(t, http.StatusBadRequest, res.status)
		assert.Equal(t, "invalid_request", res.errorCode(t))
		res = e.do(req{method: "GET", path: "/admin/revoke", token: e.admin})
		assert.Equal(t, http.StatusMethodNotAllowed, res.status)
		assert.Equal(t, "POST", res.header.Get("Allow"))
		assert.Contains(t, e.logs.String(), "admin: revoked a token (RFC 7009)")
	})
}

// TestHandler_ClosedStore: a store that is closed answers 503, not 500,
// and the cause is logged, not sent.
func TestHandler_ClosedStore(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, &admin.Options{Authorize: func(*http.Request) (string, error) { return "test", nil }})
		require.NoError(t, e.calls.Store.Close())
		res := e.do(req{method: "GET", path: "/admin/api/subjects/alice/tokens"})
		assert.Equal(t, http.StatusServiceUnavailable, res.status)
		assert.Equal(t, "temporarily_unavailable", res.errorCode(t))
		res = e.do(req{method: "POST", path: "/admin/revoke", ctype: formType, body: form("token", e.admin)})
		assert.Equal(t, http.StatusServiceUnavailable, res.status, "RFC 7009 §2.2.1: the client retries")
		assert.Contains(t, e.logs.String(), "admin: store unavailable")
	})
}
