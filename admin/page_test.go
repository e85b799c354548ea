package admin_test

import (
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// session is a browser-like client of the page: a cookie jar, and the
// CSRF token of the last page it rendered.
type session struct {
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) session() *session { return &session{e: e, c: e.browser()} }

func (s *session) get(path string) response {
	s.e.t.Helper()
	r, err := http.NewRequest("GET", s.e.srv.URL+path, nil)
	require.NoError(s.e.t, err)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	res := s.e.send(s.c, r)
	if m := csrfRE.FindStringSubmatch(res.body); m != nil {
		s.csrf = html.UnescapeString(m[1])
	}
	return res
}

// post submits a form as a same-origin browser does; header adds or
// replaces headers.
func (s *session) post(path, body string, header http.Header) response {
	s.e.t.Helper()
	r, err := http.NewRequest("POST", s.e.srv.URL+path, strings.NewReader(body))
	require.NoError(s.e.t, err)
	r.Header.Set("Content-Type", formType)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Origin", s.e.srv.URL)
	for k, v := range header {
		r.Header[k] = v
	}
	res := s.e.send(s.c, r)
	if m := csrfRE.FindStringSubmatch(res.body); m != nil {
		s.csrf = html.UnescapeString(m[1])
	}
	return res
}

func (s *session) login(token string) {
	s.e.t.Helper()
	res := s.get("/admin/")
	require.Equal(s.e.t, http.StatusUnauthorized, res.status, "the login form")
	res = s.post("/admin/login", form("csrf_token", s.csrf, "token", token), nil)
	require.Equal(s.e.t, http.StatusSeeOther, res.status, res.body)
	require.Equal(s.e.t, "/admin/", res.header.Get("Location"))
}

func TestPage_Login(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		user := e.issue("alice", tokenstore.WithMetadata(map[string]string{"scope": "read"}))
		s := e.session()

		res := s.get("/admin/?subject=alice")
		require.Equal(t, http.StatusUnauthorized, res.status)
		assert.Equal(t, "text/html; charset=utf-8", res.header.Get("Content-Type"))
		assert.Contains(t, res.body, `action="/admin/login"`)
		assert.NotContains(t, res.body, "<script")
		require.NotEmpty(t, s.csrf)

		res = s.post("/admin/login", form("token", e.admin), nil)
		assert.Equal(t, http.StatusForbidden, res.status, "no CSRF token")
		assert.Contains(t, res.body, "CSRF token is missing")
		res = s.post("/admin/login", form("csrf_token", s.csrf+"x", "token", e.admin), nil)
		assert.Equal(t, http.StatusForbidden, res.status, "a wrong CSRF token")
		res = s.post("/admin/login", form("csrf_token", s.csrf, "token", e.admin), http.Header{"Sec-Fetch-Site": {"cross-site"}})
		assert.Equal(t, http.StatusForbidden, res.status, "cross-site, with the right CSRF token")
		res = s.post("/admin/login", form("csrf_token", s.csrf, "token", e.admin), http.Header{"Sec-Fetch-Site": nil, "Origin": {"https://evil.example"}})
		assert.Equal(t, http.StatusForbidden, res.status, "another Origin, no Fetch metadata")

		res = s.post("/admin/login", form("csrf_token", s.csrf, "token", "tks_guess"), nil)
		assert.Equal(t, http.StatusUnauthorized, res.status)
		assert.Contains(t, res.body, "not an admin token")
		res = s.post("/admin/login", form("csrf_token", s.csrf, "token", user), nil)
		assert.Equal(t, http.StatusForbidden, res.status)
		assert.Contains(t, res.body, "lacks the scope &#34;tokenstore:admin&#34;")

		res = s.post("/admin/login", form("csrf_token", s.csrf, "token", e.admin), nil)
		require.Equal(t, http.StatusSeeOther, res.status, res.body)
		ck := res.header.Get("Set-Cookie")
		assert.Contains(t, ck, "tokenstore_admin=")
		assert.Contains(t, ck, "HttpOnly")
		assert.Contains(t, ck, "SameSite=Strict")
		assert.Contains(t, ck, "Path=/admin/")

		res = s.get("/admin/")
		require.Equal(t, http.StatusOK, res.status)
		assert.Contains(t, res.body, "root (token ")
		assert.Contains(t, res.body, `action="/admin/logout"`)

		res = s.post("/admin/logout", form("csrf_token", s.csrf), nil)
		require.Equal(t, http.StatusSeeOther, res.status)
		res = s.get("/admin/")
		assert.Equal(t, http.StatusUnauthorized, res.status, "logged out")
	})
}

func TestPage_FindAndRevoke(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		t1, i1 := e.issueInfo("alice", tokenstore.WithMetadata(map[string]string{"device": "<b>laptop</b>"}))
		t2, i2 := e.issueInfo("alice")
		t3 := e.issue("alice")
		require.Equal(t, http.StatusOK, e.hello(t1))
		s := e.session()
		s.login(e.admin)

		res := s.get("/admin/?subject=alice")
		require.Equal(t, http.StatusOK, res.status)
		assert.Contains(t, res.body, i1.ID.String())
		assert.Contains(t, res.body, i2.ID.String())
		assert.Contains(t, res.body, "&lt;b&gt;laptop&lt;/b&gt;", "metadata is escaped")
		assert.Contains(t, res.body, "never", "t2 was never used")

		res = s.get("/admin/?id=" + i1.ID.String())
		require.Equal(t, http.StatusOK, res.status)
		assert.Contains(t, res.body, `id="token-details"`)
		res = s.get("/admin/?id=" + t1) // a token where the ID belongs: not echoed
		assert.Contains(t, res.body, "not a token ID")
		res = s.get("/admin/?id=0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d")
		assert.Contains(t, res.body, "No token with ID")
		res = s.get("/admin/?subject=nobody")
		assert.Contains(t, res.body, "holds no live tokens")

		// Find a leaked token by the token: its details, never the token.
		res = s.post("/admin/token", form("csrf_token", s.csrf, "token", t2), nil)
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.Contains(t, res.body, i2.ID.String())
		res = s.post("/admin/token", form("token", t2), nil)
		assert.Equal(t, http.StatusForbidden, res.status, "no CSRF token")

		// The confirmation step changes nothing.
		res = s.get("/admin/token/revoke?id=" + i1.ID.String())
		require.Equal(t, http.StatusOK, res.status)
		assert.Contains(t, res.body, "Yes, revoke")
		assert.Equal(t, http.StatusOK, e.hello(t1))

		// Without the CSRF token, with another session's, or cross-origin: refused.
		res = s.post("/admin/token/revoke", form("id", i1.ID.String()), nil)
		assert.Equal(t, http.StatusForbidden, res.status)
		other := e.session()
		other.get("/admin/login")
		res = s.post("/admin/token/revoke", form("csrf_token", other.csrf, "id", i1.ID.String()), nil)
		assert.Equal(t, http.StatusForbidden, res.status, "another session's CSRF token")
		res = s.post("/admin/token/revoke", form("csrf_token", s.csrf, "id", i1.ID.String()), http.Header{"Sec-Fetch-Site": {"same-site"}})
		assert.Equal(t, http.StatusForbidden, res.status, "a sibling subdomain")
		assert.Equal(t, http.StatusOK, e.hello(t1), "nothing was revoked")

		res = s.post("/admin/token/revoke", form("csrf_token", s.csrf, "id", i1.ID.String()), nil)
		require.Equal(t, http.StatusSeeOther, res.status, res.body)
		assert.Regexp(t, `^/admin/\?revoked=1&sig=[\w-]{43}&subject=alice$`, res.header.Get("Location"))
		assert.Equal(t, http.StatusUnauthorized, e.hello(t1))
		res = s.get(res.header.Get("Location"))
		assert.Contains(t, res.body, "Revoked 1 token.")
		assert.NotContains(t, res.body, i1.ID.String())

		res = s.post("/admin/token/revoke", form("csrf_token", s.csrf, "id", i1.ID.String()), nil)
		assert.Equal(t, http.StatusNotFound, res.status, "already revoked")
		res = s.get("/admin/token/revoke?id=nope")
		assert.Equal(t, http.StatusBadRequest, res.status)

		res = s.get("/admin/subject/revoke?subject=alice")
		require.Equal(t, http.StatusOK, res.status)
		assert.Contains(t, res.body, "2 live tokens")
		res = s.post("/admin/subject/revoke", form("csrf_token", s.csrf, "subject", "alice"), nil)
		require.Equal(t, http.StatusSeeOther, res.status, res.body)
		assert.Equal(t, http.StatusUnauthorized, e.hello(t2))
		assert.Equal(t, http.StatusUnauthorized, e.hello(t3))

		res = s.post("/admin/", form("csrf_token", s.csrf), nil)
		assert.Equal(t, http.StatusMethodNotAllowed, res.status)
		res = s.get("/admin/no/such/page")
		assert.Equal(t, http.StatusNotFound, res.status)
		r, err := http.NewRequest("DELETE", e.srv.URL+"/admin/", nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusMethodNotAllowed, e.send(s.c, r).status)
	})
}

// TestPage_SharedCSRFKey: instances behind one load balancer that share
// Options.CSRFKey accept each other's forms; with their own random keys
// they refuse them.
func TestPage_SharedCSRFKey(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	e := newEnv(t, backends[0].open, &admin.Options{CSRFKey: key})
	tok, info := e.issueInfo("alice")
	s := e.session()
	s.login(e.admin)
	s.get("/admin/token/revoke?id=" + info.ID.String())

	for _, tt := range []struct {
		name   string
		key    []byte
		status int
	}{
		{"another key", nil, http.StatusForbidden},
		{"the same key", key, http.StatusSeeOther},
	} {
		h, err := admin.New(e.store, &admin.Options{CSRFKey: tt.key, InsecureCookies: true, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		mux := http.NewServeMux()
		mux.Handle("/admin/", h)
		other := httptestServer(t, mux)
		// The same browser (cookies) and the same origin as far as the
		// handler can tell: only the instance differs.
		r, err := http.NewRequest("POST", other+"/admin/token/revoke", strings.NewReader(form("csrf_token", s.csrf, "id", info.ID.String())))
		require.NoError(t, err)
		r.Header.Set("Content-Type", formType)
		for _, c := range s.c.Jar.Cookies(mustURL(t, e.srv.URL+"/admin/")) {
			r.AddCookie(c)
		}
		res := e.send(s.c, r)
		assert.Equal(t, tt.status, res.status, tt.name)
	}
	assert.Equal(t, http.StatusUnauthorized, e.hello(tok))
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

// TestAPI_TokenLimit: an issue beyond Options.MaxTokensPerSubject is a 409
// and stores nothing.
func TestAPI_TokenLimit(t *testing.T) {
	e := newEnv(t, func(t *testing.T, now func() time.Time) tokenstore.Store {
		db, err := tokenstore.Open(filepath.Join(t.TempDir(), "tokens.db"), &tokenstore.Options{Now: now, MaxTokensPerSubject: 1, SweepInterval: -1})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, db.Close()) })
		return db
	}, nil)
	res := e.do(req{method: "POST", path: "/admin/api/tokens", token: e.admin, ctype: jsonType, body: `{"subject":"alice"}`})
	require.Equal(t, http.StatusCreated, res.status, res.body)
	res = e.do(req{method: "POST", path: "/admin/api/tokens", token: e.admin, ctype: jsonType, body: `{"subject":"alice"}`})
	assert.Equal(t, http.StatusConflict, res.status)
	assert.Equal(t, "token_limit", res.errorCode(t))
	list, err := e.store.List(t.Context(), "alice")
	require.NoError(t, err)
	assert.Len(t, list, 1)
}
