package admin_test

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

const jsonType = "application/json"

func TestAPI_Issue(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		res := e.do(req{method: "POST", path: "/admin/api/tokens", token: e.admin, ctype: jsonType,
			body: `{"subject":"alice","policy":"absolute(24h)","metadata":{"device":"laptop"}}`})
		require.Equal(t, http.StatusCreated, res.status, res.body)
		var is admin.Issued
		res.json(t, &is)
		assert.Equal(t, "alice", is.Subject)
		assert.Equal(t, tokenstore.Absolute(24*time.Hour).String(), is.Policy)
		assert.Equal(t, map[string]string{"device": "laptop"}, is.Metadata)
		assert.Equal(t, e.clock.Now().Add(24*time.Hour).UTC(), is.ExpiresAt)
		assert.False(t, is.Expired)
		assert.Equal(t, http.StatusOK, e.hello(is.Token), "the issued token works")

		// The store's default policy when none is given.
		res = e.do(req{method: "POST", path: "/admin/api/tokens", token: e.admin, ctype: jsonType, body: `{"subject":"bob"}`})
		require.Equal(t, http.StatusCreated, res.status, res.body)
		res.json(t, &is)
		assert.Equal(t, tokenstore.DefaultPolicy().String(), is.Policy)

		tests := []struct {
			name, ctype, body string
			status            int
			code              string
		}{
			{"bad policy", jsonType, `{"subject":"alice","policy":"forever"}`, 400, "invalid_request"},
			{"misspelt field", jsonType, `{"subject":"alice","polcy":"absolute(1h)"}`, 400, "invalid_request"},
			{"empty subject", jsonType, `{"subject":""}`, 400, "invalid_request"},
			{"control character in subject", jsonType, `{"subject":"a\u0007"}`, 400, "invalid_request"},
			{"not JSON", jsonType, `subject=alice`, 400, "invalid_request"},
			{"two objects", jsonType, `{"subject":"a"}{"subject":"b"}`, 400, "invalid_request"},
			{"wrong type", jsonType, `{"subject":7}`, 400, "invalid_request"},
			{"form body", "application/x-www-form-urlencoded", `subject=alice`, 415, "unsupported_media_type"},
			{"too much metadata", jsonType, `{"subject":"a","metadata":{"k":"` + strings.Repeat("x", 5000) + `"}}`, 400, "invalid_request"},
		}
		before := e.store.Stats().Issued
		for _, tt := range tests {
			res := e.do(req{method: "POST", path: "/admin/api/tokens", token: e.admin, ctype: tt.ctype, body: tt.body})
			assert.Equal(t, tt.status, res.status, "%s: %s", tt.name, res.body)
			assert.Equal(t, tt.code, res.errorCode(t), tt.name)
		}
		assert.Equal(t, before, e.store.Stats().Issued, "a refused issue stores nothing")

		res = e.do(req{method: "GET", path: "/admin/api/tokens", token: e.admin})
		assert.Equal(t, http.StatusMethodNotAllowed, res.status)
		assert.Equal(t, "POST", res.header.Get("Allow"))
		assert.Equal(t, "method_not_allowed", res.errorCode(t))
	})
}

func TestAPI_ListGetInspect(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		t1, i1 := e.issueInfo("team/alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
		e.clock.Advance(time.Millisecond)
		_, i2 := e.issueInfo("team/alice", tokenstore.WithMetadata(map[string]string{"scope": "read"}))
		e.clock.Advance(time.Second)
		require.Equal(t, http.StatusOK, e.hello(t1)) // a use

		// A subject with a slash, escaped in the path.
		path := "/admin/api/subjects/" + url.PathEscape("team/alice") + "/tokens"
		res := e.do(req{method: "GET", path: path, token: e.admin})
		require.Equal(t, http.StatusOK, res.status, res.body)
		var list admin.TokenList
		res.json(t, &list)
		assert.Equal(t, "team/alice", list.Subject)
		require.Len(t, list.Tokens, 2)
		assert.Equal(t, i1.ID.String(), list.Tokens[0].ID, "oldest first")
		assert.Equal(t, i2.ID.String(), list.Tokens[1].ID)
		assert.Equal(t, e.clock.Now().UTC(), list.Tokens[0].LastUsedAt, "the use is shown")
		assert.Equal(t, list.Tokens[1].CreatedAt, list.Tokens[1].LastUsedAt, "never used")
		assert.Equal(t, map[string]string{"scope": "read"}, list.Tokens[1].Metadata)

		res = e.do(req{method: "GET", path: "/admin/api/subjects/nobody/tokens", token: e.admin})
		require.Equal(t, http.StatusOK, res.status)
		assert.JSONEq(t, `{"subject":"nobody","tokens":[]}`, res.body)

		// By ID.
		res = e.do(req{method: "GET", path: "/admin/api/tokens/" + i1.ID.String(), token: e.admin})
		require.Equal(t, http.StatusOK, res.status, res.body)
		var got admin.TokenInfo
		res.json(t, &got)
		assert.Equal(t, list.Tokens[0], got)

		res = e.do(req{method: "GET", path: "/admin/api/tokens/not-a-uuid", token: e.admin})
		assert.Equal(t, http.StatusBadRequest, res.status)
		assert.Equal(t, "invalid_id", res.errorCode(t))
		// A token pasted where its ID belongs is refused without being echoed
		// (do checks that no token is in any response).
		res = e.do(req{method: "GET", path: "/admin/api/tokens/" + t1, token: e.admin})
		assert.Equal(t, http.StatusBadRequest, res.status)
		res = e.do(req{method: "GET", path: "/admin/api/tokens/" + uuid.New().String(), token: e.admin})
		assert.Equal(t, http.StatusNotFound, res.status)
		assert.Equal(t, "not_found", res.errorCode(t))
		res = e.do(req{method: "PUT", path: "/admin/api/tokens/" + i1.ID.String(), token: e.admin})
		assert.Equal(t, http.StatusMethodNotAllowed, res.status)
		assert.Equal(t, "DELETE, GET, HEAD", res.header.Get("Allow"))

		// By token, in the body; no use is counted.
		res = e.do(req{method: "POST", path: "/admin/api/tokens/inspect", token: e.admin, ctype: jsonType, body: `{"token":"` + t1 + `"}`})
		require.Equal(t, http.StatusOK, res.status, res.body)
		res.json(t, &got)
		assert.Equal(t, list.Tokens[0], got)
		for _, tt := range []struct {
			body   string
			status int
			code   string
		}{
			{`{"token":"tks_nonsense"}`, 400, "invalid_token"},
			{`{"token":"` + t1[:len(t1)-1] + `"}`, 400, "invalid_token"}, // checksum
			{`{}`, 400, "invalid_request"},
			{`{"token":"` + forged(t, e) + `"}`, 404, "not_found"},
		} {
			res := e.do(req{method: "POST", path: "/admin/api/tokens/inspect", token: e.admin, ctype: jsonType, body: tt.body})
			assert.Equal(t, tt.status, res.status, res.body)
			assert.Equal(t, tt.code, res.errorCode(t))
		}

		// Expired but not swept: by ID still shown, flagged; by token 410.
		e.clock.Advance(time.Hour)
		res = e.do(req{method: "GET", path: "/admin/api/tokens/" + i1.ID.String(), token: e.admin})
		require.Equal(t, http.StatusOK, res.status, res.body)
		res.json(t, &got)
		assert.True(t, got.Expired)
		res = e.do(req{method: "POST", path: "/admin/api/tokens/inspect", token: e.admin, ctype: jsonType, body: `{"token":"` + t1 + `"}`})
		assert.Equal(t, http.StatusGone, res.status)
		assert.Equal(t, "expired", res.errorCode(t))
	})
}

// forged returns a well-formed token of e's store that it never issued:
// one issued and revoked.
func forged(t *testing.T, e *env) string {
	t.Helper()
	tok := e.issue("forged")
	require.NoError(t, e.store.Revoke(t.Context(), tok))
	return tok
}

func TestAPI_Revoke(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		byID, info := e.issueInfo("alice")
		byToken := e.issue("alice")
		other := e.issue("bob")

		res := e.do(req{method: "DELETE", path: "/admin/api/tokens/" + info.ID.String(), token: e.admin})
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.JSONEq(t, `{"revoked":1}`, res.body)
		assert.Equal(t, http.StatusUnauthorized, e.hello(byID), "revoked at once")
		res = e.do(req{method: "DELETE", path: "/admin/api/tokens/" + info.ID.String(), token: e.admin})
		assert.Equal(t, http.StatusNotFound, res.status)
		assert.Equal(t, "not_found", res.errorCode(t))
		res = e.do(req{method: "DELETE", path: "/admin/api/tokens/123", token: e.admin})
		assert.Equal(t, http.StatusBadRequest, res.status)

		res = e.do(req{method: "POST", path: "/admin/api/tokens/revoke", token: e.admin, ctype: jsonType, body: `{"token":"` + byToken + `"}`})
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.JSONEq(t, `{"revoked":1}`, res.body)
		assert.Equal(t, http.StatusUnauthorized, e.hello(byToken))
		res = e.do(req{method: "POST", path: "/admin/api/tokens/revoke", token: e.admin, ctype: jsonType, body: `{"token":"` + byToken + `"}`})
		assert.Equal(t, http.StatusNotFound, res.status)
		res = e.do(req{method: "POST", path: "/admin/api/tokens/revoke", token: e.admin, ctype: jsonType, body: `{"token":"garbage"}`})
		assert.Equal(t, http.StatusBadRequest, res.status)
		assert.Equal(t, "invalid_token", res.errorCode(t))
		res = e.do(req{method: "GET", path: "/admin/api/tokens/revoke", token: e.admin})
		assert.Equal(t, http.StatusMethodNotAllowed, res.status)

		e.issue("alice")
		e.issue("alice")
		res = e.do(req{method: "DELETE", path: "/admin/api/subjects/alice/tokens", token: e.admin})
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.JSONEq(t, `{"revoked":2}`, res.body)
		res = e.do(req{method: "DELETE", path: "/admin/api/subjects/alice/tokens", token: e.admin})
		assert.JSONEq(t, `{"revoked":0}`, res.body, "a subject without tokens is not an error")
		res = e.do(req{method: "POST", path: "/admin/api/subjects/alice/tokens", token: e.admin})
		assert.Equal(t, http.StatusMethodNotAllowed, res.status)
		assert.Equal(t, http.StatusOK, e.hello(other), "bob's token is untouched")
		assert.Contains(t, e.logs.String(), "admin: revoked a subject's tokens")
		assert.Contains(t, e.logs.String(), "actor=\"root (token ")
	})
}

func TestAPI_StatsExpiring(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil) // the admin token: default policy, 14 days idle
		_, soon := e.issueInfo("alice", tokenstore.WithPolicy(tokenstore.Absolute(30*time.Minute)))
		_, later := e.issueInfo("bob", tokenstore.WithPolicy(tokenstore.Absolute(50*time.Minute)))
		e.issueInfo("carol", tokenstore.WithPolicy(tokenstore.Absolute(3*time.Hour)))
		e.issueInfo("dave", tokenstore.WithPolicy(tokenstore.Absolute(time.Minute)))
		e.clock.Advance(2 * time.Minute) // dave's has expired, not swept

		res := e.do(req{method: "GET", path: "/admin/api/expiring?within=1h", token: e.admin})
		require.Equal(t, http.StatusOK, res.status, res.body)
		var list admin.TokenList
		res.json(t, &list)
		assert.Equal(t, "1h0m0s", list.Within)
		ids := []string{}
		for _, ti := range list.Tokens {
			ids = append(ids, ti.ID)
		}
		assert.Equal(t, []string{soon.ID.String(), later.ID.String()}, ids, "soonest first; not the expired one")

		for _, q := range []string{"", "?within=", "?within=soon", "?within=-1h", "?within=0s"} {
			res := e.do(req{method: "GET", path: "/admin/api/expiring" + q, token: e.admin})
			assert.Equal(t, http.StatusBadRequest, res.status, q)
			assert.Equal(t, "invalid_request", res.errorCode(t))
		}

		res = e.do(req{method: "GET", path: "/admin/api/stats", token: e.admin})
		require.Equal(t, http.StatusOK, res.status, res.body)
		var st admin.StatsResponse
		res.json(t, &st)
		assert.EqualValues(t, 5, st.Tokens.Total)
		require.NotNil(t, st.Tokens.Live)
		assert.EqualValues(t, 4, *st.Tokens.Live)
		assert.EqualValues(t, 1, *st.Tokens.Expired)
		assert.Equal(t, 1, st.Tokens.Policies[tokenstore.Absolute(3*time.Hour).String()])
		assert.EqualValues(t, 5, st.Counters.Issued)
		assert.GreaterOrEqual(t, st.Counters.Validated, uint64(2), "the admin token's uses")
		if _, ok := e.calls.Store.(*tokenstore.DB); ok {
			require.NotNil(t, st.File)
			assert.Positive(t, st.File.Size)
			assert.NotEmpty(t, st.File.Buckets)
		} else {
			assert.Nil(t, st.File)
		}
		res = e.do(req{method: "POST", path: "/admin/api/stats", token: e.admin})
		assert.Equal(t, http.StatusMethodNotAllowed, res.status)
	})
}

// TestAPI_Unauthorized: every route, without credentials or with wrong
// ones, is refused and changes nothing.
func TestAPI_Unauthorized(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		user, info := e.issueInfo("alice", tokenstore.WithMetadata(map[string]string{"scope": "read tokenstore:admins"}))
		revokedAdmin := e.issue("root2", tokenstore.WithMetadata(map[string]string{"scope": admin.DefaultScope}))
		require.NoError(t, e.store.Revoke(t.Context(), revokedAdmin))
		routes := []req{
			{method: "GET", path: "/admin/api/subjects/alice/tokens"},
			{method: "DELETE", path: "/admin/api/subjects/alice/tokens"},
			{method: "GET", path: "/admin/api/tokens/" + info.ID.String()},
			{method: "DELETE", path: "/admin/api/tokens/" + info.ID.String()},
			{method: "POST", path: "/admin/api/tokens", ctype: jsonType, body: `{"subject":"mallory"}`},
			{method: "POST", path: "/admin/api/tokens/inspect", ctype: jsonType, body: `{"token":"` + user + `"}`},
			{method: "POST", path: "/admin/api/tokens/revoke", ctype: jsonType, body: `{"token":"` + user + `"}`},
			{method: "GET", path: "/admin/api/stats"},
			{method: "GET", path: "/admin/api/expiring?within=1h"},
			{method: "POST", path: "/admin/introspect", ctype: "application/x-www-form-urlencoded", body: "token=" + user},
			{method: "POST", path: "/admin/revoke", ctype: "application/x-www-form-urlencoded", body: "token=" + user},
			{method: "GET", path: "/admin/api/nonexistent"},
		}
		creds := []struct {
			name   string
			token  string
			header http.Header
			status int
			code   string
			oauth  string // the code on /introspect and /revoke (RFC 7662 §2.3, RFC 6750 §3.1)
		}{
			{name: "none", status: 401, code: "unauthorized", oauth: "unauthorized"},
			{name: "garbage", token: "nonsense", status: 401, code: "unauthorized", oauth: "invalid_token"},
			{name: "revoked admin token", token: revokedAdmin, status: 401, code: "unauthorized", oauth: "invalid_token"},
			{name: "Basic scheme", header: http.Header{"Authorization": {"Basic cm9vdDpyb290"}}, status: 401, code: "unauthorized", oauth: "unauthorized"},
			{name: "two headers", header: http.Header{"Authorization": {"Bearer " + e.admin, "Bearer " + e.admin}}, status: 401, code: "unauthorized", oauth: "unauthorized"},
			{name: "a user's token without the admin scope", token: user, status: 403, code: "forbidden", oauth: "insufficient_scope"},
		}
		for _, c := range creds {
			for _, r := range routes {
				r.token, r.header = c.token, c.header
				res := e.do(r)
				assert.Equal(t, c.status, res.status, "%s: %s %s: %s", c.name, r.method, r.path, res.body)
				code := c.code
				if r.path == "/admin/introspect" || r.path == "/admin/revoke" {
					code = c.oauth
				}
				assert.Equal(t, code, res.errorCode(t), "%s: %s %s", c.name, r.method, r.path)
				assert.Contains(t, res.header.Get("WWW-Authenticate"), `Bearer realm="tokenstore admin"`)
				if c.status == 403 {
					assert.Contains(t, res.header.Get("WWW-Authenticate"), `error="insufficient_scope", scope="tokenstore:admin"`)
				}
			}
		}
		assert.Equal(t, http.StatusOK, e.hello(user), "nothing was revoked")
		list, err := e.store.List(t.Context(), "mallory")
		require.NoError(t, err)
		assert.Empty(t, list, "nothing was issued")
	})
}

// TestAPI_AuthorizerDecidesFirst: with the application's own authorizer,
// a refused request never reaches the store, on any route, API or page.
func TestAPI_AuthorizerDecidesFirst(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		var asked int
		e := newEnv(t, open, &admin.Options{Authorize: func(r *http.Request) (string, error) {
			asked++
			if r.Header.Get("X-Operator") == "ops" {
				return "ops", nil
			}
			return "", admin.ErrUnauthenticated
		}})
		_, info := e.issueInfo("alice")
		routes := []req{
			{method: "GET", path: "/admin/api/subjects/alice/tokens"},
			{method: "DELETE", path: "/admin/api/subjects/alice/tokens"},
			{method: "GET", path: "/admin/api/tokens/" + info.ID.String()},
			{method: "DELETE", path: "/admin/api/tokens/" + info.ID.String()},
			{method: "POST", path: "/admin/api/tokens", ctype: jsonType, body: `{"subject":"mallory"}`},
			{method: "POST", path: "/admin/api/tokens/inspect", ctype: jsonType, body: `{"token":"x"}`},
			{method: "POST", path: "/admin/api/tokens/revoke", ctype: jsonType, body: `{"token":"x"}`},
			{method: "GET", path: "/admin/api/stats"},
			{method: "GET", path: "/admin/api/expiring?within=1h"},
			{method: "POST", path: "/admin/introspect", ctype: "application/x-www-form-urlencoded", body: "token=x"},
			{method: "POST", path: "/admin/revoke", ctype: "application/x-www-form-urlencoded", body: "token=x"},
			{method: "GET", path: "/admin/"},
			{method: "GET", path: "/admin/?subject=alice"},
			{method: "GET", path: "/admin/?id=" + info.ID.String()},
			{method: "GET", path: "/admin/token/revoke?id=" + info.ID.String()},
			{method: "GET", path: "/admin/subject/revoke?subject=alice"},
		}
		before := e.calls.count()
		for i, r := range routes {
			res := e.do(r)
			assert.Equal(t, http.StatusUnauthorized, res.status, "%s %s", r.method, r.path)
			assert.Equal(t, i+1, asked, "%s %s: the authorizer decided", r.method, r.path)
		}
		assert.Equal(t, before, e.calls.count(), "no refused request reached the store")

		res := e.do(req{method: "GET", path: "/admin/api/subjects/alice/tokens", header: http.Header{"X-Operator": {"ops"}}})
		assert.Equal(t, http.StatusOK, res.status)
		res = e.do(req{method: "GET", path: "/admin/login"})
		assert.Equal(t, http.StatusNotFound, res.status, "no login form with the application's authorizer")
	})
}

func TestHandler_Routing(t *testing.T) {
	e := newEnv(t, backends[0].open, nil)
	res := e.do(req{method: "GET", path: "/admin/static/admin.css"})
	require.Equal(t, http.StatusOK, res.status)
	assert.Contains(t, res.header.Get("Content-Type"), "text/css")
	res = e.do(req{method: "POST", path: "/admin/static/admin.css"})
	assert.Equal(t, http.StatusMethodNotAllowed, res.status)

	// Mounted at "/admin" too, the bare prefix redirects to the page.
	mux := http.NewServeMux()
	h, err := admin.New(e.store, &admin.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	mux.Handle("/admin", h)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res2, err := noRedirect.Get(httptestServer(t, mux) + "/admin")
	require.NoError(t, err)
	res2.Body.Close()
	assert.Equal(t, http.StatusMovedPermanently, res2.StatusCode)
	assert.Equal(t, "/admin/", res2.Header.Get("Location"))

	_, err = admin.New(nil, nil)
	assert.Error(t, err)
	_, err = admin.New(e.store, &admin.Options{Prefix: "admin"})
	assert.Error(t, err)
	_, err = admin.New(e.store, &admin.Options{CSRFKey: []byte("short")})
	assert.Error(t, err)
}

// TestAPI_CrossOrigin: a browser's cross-origin request to a state-changing
// route is refused before it is authorized, even with a valid credential
// (a cookie a browser would attach on its own); a client that is not a
// browser sends neither Sec-Fetch-Site nor Origin and is let through.
func TestAPI_CrossOrigin(t *testing.T) {
	e := newEnv(t, backends[0].open, nil)
	victim := e.issue("alice")
	tests := []struct {
		name   string
		header http.Header
		status int
	}{
		{"cross-site fetch", http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403},
		{"same-site (a sibling subdomain)", http.Header{"Sec-Fetch-Site": {"same-site"}}, 403},
		{"another Origin, no Fetch metadata", http.Header{"Origin": {"https://evil.example"}}, 403},
		{"same origin", http.Header{"Sec-Fetch-Site": {"same-origin"}}, 200},
		{"not a browser", nil, 200},
	}
	for _, tt := range tests {
		before := e.calls.count()
		res := e.do(req{method: "POST", path: "/admin/revoke", token: e.admin, ctype: formType, body: form("token", "tks_x"), header: tt.header})
		assert.Equal(t, tt.status, res.status, tt.name)
		if tt.status == 403 {
			assert.Equal(t, "cross_origin", res.errorCode(t), tt.name)
			assert.Equal(t, before, e.calls.count(), "%s: refused before the store", tt.name)
		}
	}
	res := e.do(req{method: "DELETE", path: "/admin/api/subjects/alice/tokens", token: e.admin, header: http.Header{"Sec-Fetch-Site": {"cross-site"}}})
	assert.Equal(t, http.StatusForbidden, res.status)
	assert.Equal(t, http.StatusOK, e.hello(victim))
	// Reads are not state-changing: a cross-site GET is answered (and
	// its response is unreadable cross-origin without CORS, which the
	// handler never grants).
	res = e.do(req{method: "GET", path: "/admin/api/stats", token: e.admin, header: http.Header{"Sec-Fetch-Site": {"cross-site"}}})
	assert.Equal(t, http.StatusOK, res.status)
	assert.Empty(t, res.header.Get("Access-Control-Allow-Origin"))
}
