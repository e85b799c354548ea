package tokenstore_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// serveScoped runs a real HTTP server on 127.0.0.1 with the middleware,
// then RequireScopes(scopes...), over mwWhoAmI.
func (e *mwEnv) serveScoped(t *testing.T, scopes []string, opts ...tokenstore.MiddlewareOption) *httptest.Server {
	t.Helper()
	opts = append([]tokenstore.MiddlewareOption{tokenstore.WithLogger(e.logger), tokenstore.WithRealm("test")}, opts...)
	h := tokenstore.Middleware(e.db, opts...)(tokenstore.RequireScopes(scopes...)(mwWhoAmI))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

const mwInsufficient = `Bearer realm="test", error="insufficient_scope", error_description="the token lacks a required scope", scope="read write"`

func TestRequireScopes_StatusPaths(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	both, _ := e.issue(t, "alice", tokenstore.WithScopes("read", "write"))
	more, _ := e.issue(t, "bob", tokenstore.WithScopes("admin", "read", "write"))
	readOnly, _ := e.issue(t, "carol", tokenstore.WithScopes("read"))
	none, _ := e.issue(t, "dave")
	caseDiffers, _ := e.issue(t, "erin", tokenstore.WithScopes("READ", "WRITE"))
	revoked, _ := e.issue(t, "frank", tokenstore.WithScopes("read", "write"))
	expired, _ := e.issue(t, "grace", tokenstore.WithScopes("read", "write"), tokenstore.WithPolicy(tokenstore.Absolute(time.Minute)))
	require.NoError(t, e.db.Revoke(context.Background(), revoked))
	e.clock.Advance(time.Hour)
	srv := e.serveScoped(t, []string{"read", "write"})

	tests := []struct {
		name      string
		give      []string
		wantCode  int
		wantBody  string // for 200
		challenge string
		wantError string
		wantDesc  string
	}{
		{"has exactly the scopes", mwBearer(both), 200, "alice", "", "", ""},
		{"has more", mwBearer(more), 200, "bob", "", "", ""},
		{"lacks one", mwBearer(readOnly), 403, "", mwInsufficient, "insufficient_scope", "the token lacks a required scope"},
		{"has none", mwBearer(none), 403, "", mwInsufficient, "insufficient_scope", "the token lacks a required scope"},
		{"scopes are case-sensitive", mwBearer(caseDiffers), 403, "", mwInsufficient, "insufficient_scope", "the token lacks a required scope"},
		{"no token: 401, not 403", nil, 401, "", `Bearer realm="test"`, "unauthorized", "authentication required"},
		{"revoked: 401", mwBearer(revoked), 401, "", `Bearer realm="test", error="invalid_token", error_description="the token is not valid"`, "invalid_token", "the token is not valid"},
		{"expired: 401", mwBearer(expired), 401, "", `Bearer realm="test", error="invalid_token", error_description="the token has expired"`, "invalid_token", "the token has expired"},
		{"malformed request: 400", []string{"Bearer"}, 400, "", `Bearer realm="test", error="invalid_request", error_description="the authorization header has no token"`, "invalid_request", "the authorization header has no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get(t, srv, "/", tt.give)
			if tt.wantCode == 200 {
				assert.Equal(t, 200, r.status, "body %q", r.body)
				assert.Equal(t, tt.wantBody, r.body)
				assert.Empty(t, r.header.Get("WWW-Authenticate"))
				return
			}
			assert.Equal(t, tt.wantCode, r.status, "body %q", r.body)
			assert.Equal(t, tt.challenge, r.header.Get("WWW-Authenticate"))
			assert.Equal(t, "application/json", r.header.Get("Content-Type"))
			assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
			assert.Equal(t, map[string]string{"error": tt.wantError, "error_description": tt.wantDesc}, r.json(t))
		})
	}
	logs := e.logs.String()
	assert.Contains(t, logs, `"status":403`)
	assert.Contains(t, logs, `tokenstore: insufficient scope: lacks write`, "the log names the scope missing")
}

func TestRequireScopes_Optional(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	both, _ := e.issue(t, "alice", tokenstore.WithScopes("read", "write"))
	readOnly, _ := e.issue(t, "carol", tokenstore.WithScopes("read"))
	srv := e.serveScoped(t, []string{"read", "write"}, tokenstore.WithOptional())

	// The anonymous request the middleware lets through is refused as the
	// middleware refuses one: 401 with its challenge, never 403.
	mwAssertRefused(t, e.get(t, srv, "/", nil), 401, `Bearer realm="test"`, "unauthorized", "authentication required")
	mwAssertRefused(t, e.get(t, srv, "/", []string{"Basic YWxpY2U6c2VjcmV0"}), 401, `Bearer realm="test"`, "unauthorized", "authentication required")
	r := e.get(t, srv, "/", mwBearer(both))
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "alice", r.body)
	r = e.get(t, srv, "/", mwBearer(readOnly))
	assert.Equal(t, 403, r.status)
	assert.Equal(t, mwInsufficient, r.header.Get("WWW-Authenticate"))

	// With no scopes, RequireScopes only requires a token.
	h := tokenstore.Middleware(e.db, tokenstore.WithOptional(), tokenstore.WithLogger(e.logger))(tokenstore.RequireScopes()(mwWhoAmI))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.Equal(t, 401, w.Code)
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+readOnly)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	assert.Equal(t, 200, w.Code)
}

func TestRequireScopes_ErrorHandler(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	readOnly, _ := e.issue(t, "carol", tokenstore.WithScopes("read"))
	type call struct {
		status     int
		code, desc string
		err        error
		challenge  string
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	handler := func(w http.ResponseWriter, r *http.Request, status int, code, description string, err error) {
		mu.Lock()
		calls = append(calls, call{status, code, description, err, w.Header().Get("WWW-Authenticate")})
		mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte("custom " + code))
	}
	srv := e.serveScoped(t, []string{"read", "write"}, tokenstore.WithErrorHandler(handler), tokenstore.WithOptional())

	r := e.get(t, srv, "/", mwBearer(readOnly))
	assert.Equal(t, 403, r.status)
	assert.Equal(t, "custom insufficient_scope", r.body)
	r = e.get(t, srv, "/", nil)
	assert.Equal(t, 401, r.status)
	assert.Equal(t, "custom ", r.body)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, calls, 2)
	assert.Equal(t, call{403, "insufficient_scope", "the token lacks a required scope", calls[0].err, mwInsufficient}, calls[0])
	assert.ErrorIs(t, calls[0].err, tokenstore.ErrInsufficientScope)
	assert.EqualError(t, calls[0].err, "tokenstore: insufficient scope: lacks write")
	assert.Equal(t, 401, calls[1].status)
	assert.Equal(t, "", calls[1].code)
	assert.ErrorIs(t, calls[1].err, tokenstore.ErrNoCredentials)
	assert.Equal(t, `Bearer realm="test"`, calls[1].challenge)
}

func TestRequireScopes_Challenge(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	readOnly, _ := e.issue(t, "carol", tokenstore.WithScopes("read"))
	tests := []struct {
		name   string
		scopes []string
		opts   []tokenstore.MiddlewareOption
		want   string
	}{
		{"no realm", []string{"write"}, []tokenstore.MiddlewareOption{tokenstore.WithRealm("")},
			`Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="write"`},
		{"first scheme named", []string{"write"}, []tokenstore.MiddlewareOption{tokenstore.WithSchemes("Token", "Bearer")},
			`Token realm="test", error="insufficient_scope", error_description="the token lacks a required scope", scope="write"`},
		{"every scope required is named, in the order given", []string{"write", "read", "admin"}, nil,
			`Bearer realm="test", error="insufficient_scope", error_description="the token lacks a required scope", scope="write read admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e.serveScoped(t, tt.scopes, tt.opts...)
			r := e.get(t, srv, "/", mwBearer(readOnly))
			assert.Equal(t, 403, r.status)
			assert.Equal(t, tt.want, r.header.Get("WWW-Authenticate"))
		})
	}
}

func TestRequireScopes_WithoutMiddleware(t *testing.T) {
	h := tokenstore.RequireScopes("read")(mwWhoAmI)

	// A chain mistake: no Middleware before it. Refused as a default
	// Middleware would, never let through.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.Equal(t, 401, w.Code)
	assert.Equal(t, `Bearer realm="api"`, w.Header().Get("WWW-Authenticate"))
	assert.JSONEq(t, `{"error":"unauthorized","error_description":"authentication required"}`, w.Body.String())

	// A context from NewContext, as another protocol's middleware makes it.
	for _, tt := range []struct {
		scope string
		want  int
	}{{"read", 200}, {"write", 403}} {
		info := tokenstore.Info{Subject: "alice", Metadata: map[string]string{tokenstore.ScopeKey: tt.scope}}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r.WithContext(tokenstore.NewContext(r.Context(), info)))
		assert.Equal(t, tt.want, w.Code, tt.scope)
		if tt.want == 403 {
			assert.Equal(t, `Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="read"`, w.Header().Get("WWW-Authenticate"))
		} else {
			assert.Equal(t, "alice", w.Body.String())
		}
	}
}

// TestRequireScopes_NewContextAfterMiddleware: a handler between
// Middleware and RequireScopes that replaces the Info with NewContext (one
// that narrows a token's scopes, say) keeps the Middleware's realm, error
// handler and logger for RequireScopes's refusals.
func TestRequireScopes_NewContextAfterMiddleware(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice", tokenstore.WithScopes("read", "write"))
	var handled []int
	var mu sync.Mutex
	onError := func(w http.ResponseWriter, _ *http.Request, status int, code, _ string, _ error) {
		mu.Lock()
		handled = append(handled, status)
		mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte("custom " + code))
	}
	narrow := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			info, _ := tokenstore.FromContext(r.Context())
			info.Metadata = map[string]string{tokenstore.ScopeKey: "read"} // write dropped
			next.ServeHTTP(w, r.WithContext(tokenstore.NewContext(r.Context(), info)))
		})
	}
	srv := httptest.NewServer(tokenstore.Middleware(e.db, tokenstore.WithRealm("test"), tokenstore.WithLogger(e.logger), tokenstore.WithErrorHandler(onError))(
		narrow(tokenstore.RequireScopes("write")(mwWhoAmI))))
	t.Cleanup(srv.Close)

	r := e.get(t, srv, "/", mwBearer(token))
	assert.Equal(t, 403, r.status)
	assert.Equal(t, `Bearer realm="test", error="insufficient_scope", error_description="the token lacks a required scope", scope="write"`, r.header.Get("WWW-Authenticate"))
	assert.Equal(t, "custom insufficient_scope", r.body, "the Middleware's error handler writes it")
	assert.Contains(t, e.logs.String(), `"status":403`, "the Middleware's logger reports it")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{403}, handled)
}

func TestNewContext(t *testing.T) {
	info := tokenstore.Info{Subject: "alice"}
	parent := context.WithValue(context.Background(), mwOuterKey{}, "o")
	ctx := tokenstore.NewContext(parent, info)
	got, ok := tokenstore.FromContext(ctx)
	assert.True(t, ok)
	assert.Equal(t, info, got)
	assert.Equal(t, "o", ctx.Value(mwOuterKey{}), "other values pass through")
}

func TestRequireScopes_Panics(t *testing.T) {
	assert.PanicsWithValue(t, `tokenstore: RequireScopes: invalid scope: "a b" holds a space (one scope per argument), which RFC 6749 §3.3 does not allow in a scope`,
		func() { tokenstore.RequireScopes("a b") })
	assert.Panics(t, func() { tokenstore.RequireScopes("") })
	assert.PanicsWithValue(t, "tokenstore: RequireScopes: nil next handler", func() { tokenstore.RequireScopes("a")(nil) })
}

// BenchmarkRequireScopes compares the middleware alone with the middleware
// followed by RequireScopes, on tokens that hold five scopes, two of them
// required, in parallel as a server runs: the difference is what the scope
// check costs a request.
func BenchmarkRequireScopes(b *testing.B) {
	const n = 1024
	db, err := tokenstore.Open(filepath.Join(b.TempDir(), "tokens.db"), &tokenstore.Options{SweepInterval: -1})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, db.Close()) })
	ctx := context.Background()
	reqs := make([]tokenstore.IssueRequest, n)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: "user", Metadata: map[string]string{tokenstore.ScopeKey: "orders:read orders:write profile read write"}}
	}
	issued, err := db.IssueBatch(ctx, reqs)
	require.NoError(b, err)
	auth := make([][]string, n)
	for i, is := range issued {
		auth[i] = []string{"Bearer " + is.Token}
		_, err := db.Validate(ctx, is.Token) // warm the cache as a running server would be
		require.NoError(b, err)
	}
	run := func(h func(http.Handler) http.Handler) func(b *testing.B) {
		return func(b *testing.B) {
			var ok atomic.Int64
			handler := tokenstore.Middleware(db)(h(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ok.Add(1)
			})))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w, r := &mwDiscard{h: http.Header{}}, httptest.NewRequest(http.MethodGet, "/api/orders", nil)
				i := 0
				for pb.Next() {
					r.Header["Authorization"] = auth[i%n]
					handler.ServeHTTP(w, r)
					i++
				}
			})
			if ok.Load() == 0 {
				b.Fatal("no request reached the handler")
			}
		}
	}
	b.Run("Middleware", run(func(h http.Handler) http.Handler { return h }))
	b.Run("RequireScopes", run(tokenstore.RequireScopes("orders:write", "write")))
}
