package tokenstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tokenstore/tokenstore/internal/logtest"
	"go.uber.org/goleak"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// The helpers of this file are prefixed mw so that they cannot clash with
// those of the package's other test files.

// mwEnv is a store on a temporary file with an injected clock, a logger at
// Debug level, and every token issued, so that responses and logs can be
// checked for them.
type mwEnv struct {
	db     *tokenstore.DB
	clock  *tokenstoretest.Clock
	logs   *logtest.Buffer
	logger *slog.Logger

	mu      sync.Mutex
	secrets []string
}

var mwEpoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newMWEnv opens a store with policy as its default. On cleanup it closes
// the store, checks that no log line holds a token, and that no goroutine
// started by the test is left.
func newMWEnv(t *testing.T, policy tokenstore.Policy) *mwEnv {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // first registered: runs last
	e := &mwEnv{clock: tokenstoretest.NewClockAt(mwEpoch), logs: &logtest.Buffer{}}
	e.logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err := tokenstore.Open(filepath.Join(t.TempDir(), "tokens.db"), &tokenstore.Options{
		Policy:        policy,
		Now:           e.clock.Now,
		SweepInterval: -1, // expired tokens stay, to be refused as expired
		Logger:        e.logger,
	})
	require.NoError(t, err)
	e.db = db
	t.Cleanup(func() {
		assert.NoError(t, db.Close())
		logs := e.logs.String()
		for _, s := range e.tokens() {
			assert.NotContains(t, logs, s, "a log line holds a token")
		}
	})
	return e
}

func (e *mwEnv) remember(token string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, token)
	return token
}

func (e *mwEnv) tokens() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.secrets...)
}

func (e *mwEnv) issue(t testing.TB, subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info) {
	t.Helper()
	token, info, err := e.db.Issue(context.Background(), subject, opts...)
	require.NoError(t, err)
	return e.remember(token), info
}

// mwWhoAmI is the protected handler: it answers with the subject of the
// token, or "anonymous".
var mwWhoAmI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	info, ok := tokenstore.FromContext(r.Context())
	if !ok {
		_, _ = io.WriteString(w, "anonymous")
		return
	}
	_, _ = io.WriteString(w, info.Subject)
})

// serve runs a real HTTP server on 127.0.0.1 with the middleware over
// mwWhoAmI, logging to e's logger unless opts say otherwise.
func (e *mwEnv) serve(t *testing.T, v tokenstore.Validator, opts ...tokenstore.MiddlewareOption) *httptest.Server {
	t.Helper()
	opts = append([]tokenstore.MiddlewareOption{tokenstore.WithLogger(e.logger), tokenstore.WithRealm("test")}, opts...)
	srv := httptest.NewServer(tokenstore.Middleware(v, opts...)(mwWhoAmI))
	t.Cleanup(srv.Close)
	return srv
}

type mwResponse struct {
	status int
	header http.Header
	body   string
}

// json decodes an error body.
func (r mwResponse) json(t testing.TB) map[string]string {
	t.Helper()
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.body), &m), "body %q", r.body)
	return m
}

// get sends GET target (a path and query) with the given Authorization
// headers and cookies, and checks that the response holds no token.
func (e *mwEnv) get(t testing.TB, srv *httptest.Server, target string, auth []string, cookies ...*http.Cookie) mwResponse {
	t.Helper()
	// assert, not require: get runs in goroutines of its own too.
	req, err := http.NewRequest(http.MethodGet, srv.URL+target, nil)
	if !assert.NoError(t, err) {
		return mwResponse{}
	}
	if auth != nil {
		req.Header["Authorization"] = auth
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := srv.Client().Do(req)
	if !assert.NoError(t, err) {
		return mwResponse{}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	assert.NoError(t, err)
	r := mwResponse{status: resp.StatusCode, header: resp.Header, body: string(body)}
	for _, s := range e.tokens() {
		assert.NotContains(t, r.body, s, "the response body holds a token")
		for k, vs := range r.header {
			for _, v := range vs {
				assert.NotContains(t, v, s, "response header %s holds a token", k)
			}
		}
	}
	return r
}

// mwAssertRefused checks a refusal: status, challenge and JSON body.
func mwAssertRefused(t testing.TB, r mwResponse, status int, challenge, code, description string) {
	t.Helper()
	assert.Equal(t, status, r.status, "body %q", r.body)
	assert.Equal(t, challenge, r.header.Get("WWW-Authenticate"))
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
	assert.Empty(t, r.header.Get("Token-Expires"))
	assert.Equal(t, map[string]string{"error": code, "error_description": description}, r.json(t))
}

func mwBearer(token string) []string { return []string{"Bearer " + token} }

func TestMiddleware_RFC6750(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	valid, validInfo := e.issue(t, "alice", tokenstore.WithPolicy(tokenstore.Absolute(48*time.Hour)))
	expired, _ := e.issue(t, "bob", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	revoked, _ := e.issue(t, "carol")
	require.NoError(t, e.db.Revoke(context.Background(), revoked))
	format, err := tokenstore.NewFormat("")
	require.NoError(t, err)
	unknown, _ := format.Generate()
	e.remember(unknown)
	badChecksum := e.remember(valid[:len(valid)-1] + string(valid[len(valid)-1]^1))
	e.clock.Advance(2 * time.Hour)

	const (
		noCode  = `Bearer realm="test"`
		invalid = `Bearer realm="test", error="invalid_token", error_description=`
		badReq  = `Bearer realm="test", error="invalid_request", error_description=`
	)
	tests := []struct {
		name      string
		give      []string // Authorization headers
		wantCode  int
		wantError string // error code in the body; "" for 200
		wantDesc  string
	}{
		{"no credentials", nil, 401, "unauthorized", "authentication required"},
		{"empty header", []string{""}, 401, "unauthorized", "authentication required"},
		{"another scheme", []string{"Basic YWxpY2U6c2VjcmV0"}, 401, "unauthorized", "authentication required"},
		{"scheme alone of another kind", []string{"Negotiate"}, 401, "unauthorized", "authentication required"},

		{"Bearer", mwBearer(valid), 200, "", ""},
		{"Token (DRF)", []string{"Token " + valid}, 200, "", ""},
		{"bearer lowercase", []string{"bearer " + valid}, 200, "", ""},
		{"TOKEN uppercase", []string{"TOKEN " + valid}, 200, "", ""},
		{"several spaces after the scheme", []string{"Bearer   " + valid}, 200, "", ""},

		{"malformed", mwBearer("not-a-token"), 401, "invalid_token", "the token is malformed"},
		{"bad checksum", mwBearer(badChecksum), 401, "invalid_token", "the token is malformed"},
		{"malformed, Token scheme", []string{"Token 0123456789abcdef"}, 401, "invalid_token", "the token is malformed"},
		{"unknown", mwBearer(unknown), 401, "invalid_token", "the token is not valid"},
		{"revoked", mwBearer(revoked), 401, "invalid_token", "the token is not valid"},
		{"expired", mwBearer(expired), 401, "invalid_token", "the token has expired"},
		{"expired, Token scheme", []string{"token " + expired}, 401, "invalid_token", "the token has expired"},

		{"Bearer with no token", []string{"Bearer"}, 400, "invalid_request", "the authorization header has no token"},
		{"Token with no token", []string{"Token   "}, 400, "invalid_request", "the authorization header has no token"},
		{"two Authorization headers", []string{"Bearer " + valid, "Bearer " + valid}, 400, "invalid_request", "more than one authorization header"},
		{"two headers of two schemes", []string{"Basic YWxpY2U6c2VjcmV0", "Bearer " + valid}, 400, "invalid_request", "more than one authorization header"},
		{"token with spaces", mwBearer(valid + " " + valid), 400, "invalid_request", "the authorization header must hold one token after the scheme"},
		{"token with a tab", mwBearer(valid + "\tx"), 400, "invalid_request", "the authorization header must hold one token after the scheme"},
	}
	srv := e.serve(t, e.db)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get(t, srv, "/", tt.give)
			switch tt.wantCode {
			case 200:
				assert.Equal(t, 200, r.status, "body %q", r.body)
				assert.Equal(t, "alice", r.body)
				assert.Empty(t, r.header.Get("WWW-Authenticate"))
				assert.Equal(t, validInfo.ExpiresAt.UTC().Format(http.TimeFormat), r.header.Get("Token-Expires"))
			case 401:
				challenge := noCode
				if tt.wantError != "unauthorized" {
					challenge = invalid + `"` + tt.wantDesc + `"`
				}
				mwAssertRefused(t, r, 401, challenge, tt.wantError, tt.wantDesc)
			case 400:
				mwAssertRefused(t, r, 400, badReq+`"`+tt.wantDesc+`"`, tt.wantError, tt.wantDesc)
			default:
				t.Fatalf("bad test: status %d", tt.wantCode)
			}
		})
	}
}

func TestMiddleware_StoreClosed(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice")
	srv := e.serve(t, e.db)
	require.Equal(t, 200, e.get(t, srv, "/", mwBearer(token)).status)

	require.NoError(t, e.db.Close())
	r := e.get(t, srv, "/", mwBearer(token))
	assert.Equal(t, 503, r.status)
	assert.Empty(t, r.header.Get("WWW-Authenticate"))
	assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
	assert.Equal(t, map[string]string{"error": "temporarily_unavailable", "error_description": "the service is temporarily unavailable"}, r.json(t))
	assert.NotContains(t, r.body, "closed", "the failure is not described to the client")
	assert.Contains(t, e.logs.String(), `"msg":"tokenstore: store is closed"`)
	assert.Contains(t, e.logs.String(), `"status":503`)
}

// mwValidatorFunc adapts a function to tokenstore.Validator.
type mwValidatorFunc func(ctx context.Context, token string) (tokenstore.Info, error)

func (f mwValidatorFunc) Validate(ctx context.Context, token string) (tokenstore.Info, error) {
	return f(ctx, token)
}

func TestMiddleware_StoreFailing(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice")
	// A careless Validator that puts the token in its error: the
	// middleware must still keep it out of the log.
	failing := mwValidatorFunc(func(_ context.Context, tok string) (tokenstore.Info, error) {
		return tokenstore.Info{}, fmt.Errorf("disk on fire while reading %s: %w", tok, errors.ErrUnsupported)
	})
	srv := e.serve(t, failing)

	r := e.get(t, srv, "/", mwBearer(token))
	assert.Equal(t, 500, r.status)
	assert.Empty(t, r.header.Get("WWW-Authenticate"))
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
	assert.Equal(t, map[string]string{"error": "server_error", "error_description": "internal server error"}, r.json(t))
	assert.NotContains(t, r.body, "disk on fire")

	logs := e.logs.String()
	assert.Contains(t, logs, `"level":"ERROR"`)
	assert.Contains(t, logs, "disk on fire while reading [token]")
	assert.Contains(t, logs, `"path":"/"`)
}

// TestMiddleware_StoreTimeout: a store that does not answer in time (its
// own deadline, or a network timeout) while the client is still there, or
// cannot write what the check needs (a read-only Redis replica refusing
// the write that ends a grace), is 503, which clients retry, not 500.
func TestMiddleware_StoreTimeout(t *testing.T) {
	for name, give := range map[string]error{
		"its own deadline":   fmt.Errorf("redisstore: validate: %w", context.DeadlineExceeded),
		"a network timeout":  &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded},
		"a read-only server": fmt.Errorf("redisstore: validate: the grace could not be ended: %w", tokenstore.ErrReadOnly),
	} {
		t.Run(name, func(t *testing.T) {
			e := newMWEnv(t, tokenstore.Policy{})
			token, _ := e.issue(t, "alice")
			srv := e.serve(t, mwValidatorFunc(func(context.Context, string) (tokenstore.Info, error) {
				return tokenstore.Info{}, give
			}))
			r := e.get(t, srv, "/", mwBearer(token))
			assert.Equal(t, 503, r.status)
			assert.Equal(t, map[string]string{"error": "temporarily_unavailable", "error_description": "the service is temporarily unavailable"}, r.json(t))
			assert.Contains(t, e.logs.String(), `"level":"WARN"`)
			assert.NotContains(t, e.logs.String(), `"level":"ERROR"`)
		})
	}
}

func TestMiddleware_RequestCanceled(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice")
	h := tokenstore.Middleware(e.db, tokenstore.WithLogger(e.logger))(mwWhoAmI)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	assert.Equal(t, 503, w.Code)
	assert.NotContains(t, e.logs.String(), `"level":"ERROR"`, "a client that left is no server error")
}

func TestMiddleware_RevokedBetweenRequests(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice")
	other, _ := e.issue(t, "alice")
	srv := e.serve(t, e.db)

	r := e.get(t, srv, "/", mwBearer(token))
	require.Equal(t, 200, r.status)
	assert.Equal(t, "alice", r.body)

	require.NoError(t, e.db.Revoke(context.Background(), token))
	r = e.get(t, srv, "/", mwBearer(token))
	mwAssertRefused(t, r, 401, `Bearer realm="test", error="invalid_token", error_description="the token is not valid"`,
		"invalid_token", "the token is not valid")

	r = e.get(t, srv, "/", mwBearer(other))
	assert.Equal(t, 200, r.status, "the subject's other token still works")
}

func TestMiddleware_SlidingKeptAlive(t *testing.T) {
	const idle, maxLife = time.Hour, 6 * time.Hour
	e := newMWEnv(t, tokenstore.Sliding(idle, maxLife))
	active, info := e.issue(t, "alice")
	idleToken, _ := e.issue(t, "bob")
	srv := e.serve(t, e.db)
	assert.True(t, mwEpoch.Add(idle).Equal(info.ExpiresAt))

	// A request every 50 minutes keeps the token alive past its idle
	// timeout, and each response says the new deadline...
	for step := 1; step <= 7; step++ {
		now := e.clock.Advance(50 * time.Minute)
		r := e.get(t, srv, "/", mwBearer(active))
		require.Equal(t, 200, r.status, "step %d: %s", step, r.body)
		want := now.Add(idle)
		if cap := mwEpoch.Add(maxLife); want.After(cap) {
			want = cap // ...up to the hard cap (step 7: 5h50m + 1h > 6h)
		}
		assert.Equal(t, want.Format(http.TimeFormat), r.header.Get("Token-Expires"), "step %d", step)
		if step == 2 {
			r := e.get(t, srv, "/", mwBearer(idleToken))
			mwAssertRefused(t, r, 401, `Bearer realm="test", error="invalid_token", error_description="the token has expired"`,
				"invalid_token", "the token has expired")
		}
	}
	// Past the cap no request saves it.
	e.clock.Advance(11 * time.Minute)
	r := e.get(t, srv, "/", mwBearer(active))
	mwAssertRefused(t, r, 401, `Bearer realm="test", error="invalid_token", error_description="the token has expired"`,
		"invalid_token", "the token has expired")
}

func TestMiddleware_ExpiryHeader(t *testing.T) {
	e := newMWEnv(t, tokenstore.Sliding(time.Hour, 0))
	token, _ := e.issue(t, "alice")

	tests := []struct {
		name       string
		give       []tokenstore.MiddlewareOption
		wantHeader string
	}{
		{"default", nil, "Token-Expires"},
		{"renamed, canonicalised", []tokenstore.MiddlewareOption{tokenstore.WithExpiryHeader("x-token-expiry")}, "X-Token-Expiry"},
		{"off", []tokenstore.MiddlewareOption{tokenstore.WithExpiryHeader("")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e.serve(t, e.db, tt.give...)
			now := e.clock.Advance(10*time.Minute + 500*time.Millisecond)
			r := e.get(t, srv, "/", mwBearer(token))
			require.Equal(t, 200, r.status)
			if tt.wantHeader == "" {
				assert.Empty(t, r.header.Get("Token-Expires"))
				return
			}
			got := r.header.Get(tt.wantHeader)
			assert.Equal(t, now.Add(time.Hour).Truncate(time.Second).Format(http.TimeFormat), got, "the slid deadline, rounded down")
			parsed, err := http.ParseTime(got)
			require.NoError(t, err)
			assert.False(t, parsed.After(now.Add(time.Hour)))
		})
	}
}

func TestMiddleware_ExpiryHeaderFormat(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	srv := e.serve(t, e.db)
	india := time.FixedZone("IST", 5*3600+1800)
	for _, expiry := range []time.Time{ // increasing: the clock only moves forward
		time.Date(2030, 1, 2, 3, 4, 5, 999e6, time.UTC),
		time.Date(2030, 9, 9, 9, 9, 9, 0, time.UTC),
		time.Date(2031, 1, 1, 2, 0, 0, 0, india), // the day before in UTC
		time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2100, 2, 28, 12, 30, 0, 0, time.UTC),
	} {
		e.clock.Set(expiry.Add(-time.Hour))
		token, _ := e.issue(t, "alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
		r := e.get(t, srv, "/", mwBearer(token))
		require.Equal(t, 200, r.status)
		assert.Equal(t, expiry.UTC().Format(http.TimeFormat), r.header.Get("Token-Expires"))
	}
}

func TestMiddleware_Cookie(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice")
	headerToken, _ := e.issue(t, "bob")
	revoked, _ := e.issue(t, "carol")
	require.NoError(t, e.db.Revoke(context.Background(), revoked))
	srv := e.serve(t, e.db, tokenstore.WithCookie("session"))
	plain := e.serve(t, e.db)
	cookie := func(v string) *http.Cookie { return &http.Cookie{Name: "session", Value: v} }

	r := e.get(t, srv, "/", nil, cookie(token))
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "alice", r.body)

	r = e.get(t, srv, "/", nil, cookie(revoked))
	mwAssertRefused(t, r, 401, `Bearer realm="test", error="invalid_token", error_description="the token is not valid"`,
		"invalid_token", "the token is not valid")

	r = e.get(t, srv, "/", nil, cookie(""))
	mwAssertRefused(t, r, 401, `Bearer realm="test"`, "unauthorized", "authentication required")

	r = e.get(t, srv, "/", nil, &http.Cookie{Name: "other", Value: token})
	mwAssertRefused(t, r, 401, `Bearer realm="test"`, "unauthorized", "authentication required")

	r = e.get(t, srv, "/", mwBearer(headerToken), cookie(revoked))
	assert.Equal(t, 200, r.status, "the Authorization header comes first")
	assert.Equal(t, "bob", r.body)

	r = e.get(t, srv, "/", []string{"Basic YWxpY2U6c2VjcmV0"}, cookie(token))
	assert.Equal(t, 200, r.status, "a header of another scheme is not a token")
	assert.Equal(t, "alice", r.body)

	r = e.get(t, plain, "/", nil, cookie(token))
	mwAssertRefused(t, r, 401, `Bearer realm="test"`, "unauthorized", "authentication required")
}

func TestMiddleware_QueryParam(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice")
	srv := e.serve(t, e.db, tokenstore.WithQueryParam("access_token"))
	plain := e.serve(t, e.db)
	q := "/?access_token=" + url.QueryEscape(token)

	r := e.get(t, plain, q, nil)
	mwAssertRefused(t, r, 401, `Bearer realm="test"`, "unauthorized", "authentication required")

	r = e.get(t, srv, q, nil)
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "alice", r.body)

	const badReq = `Bearer realm="test", error="invalid_request", error_description=`
	r = e.get(t, srv, q, mwBearer(token))
	mwAssertRefused(t, r, 400, badReq+`"the token was sent by more than one method"`, "invalid_request", "the token was sent by more than one method")
	r = e.get(t, srv, q+"&access_token=x", nil)
	mwAssertRefused(t, r, 400, badReq+`"the token query parameter is repeated"`, "invalid_request", "the token query parameter is repeated")
	r = e.get(t, srv, "/?access_token=", nil)
	mwAssertRefused(t, r, 400, badReq+`"the token query parameter is empty"`, "invalid_request", "the token query parameter is empty")

	r = e.get(t, srv, "/?access_token="+url.QueryEscape(token+"x"), nil)
	mwAssertRefused(t, r, 401, `Bearer realm="test", error="invalid_token", error_description="the token is malformed"`,
		"invalid_token", "the token is malformed")
}

func TestMiddleware_Optional(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice")
	expired, _ := e.issue(t, "bob", tokenstore.WithPolicy(tokenstore.Absolute(time.Minute)))
	e.clock.Advance(time.Hour)
	srv := e.serve(t, e.db, tokenstore.WithOptional(), tokenstore.WithCookie("session"))

	tests := []struct {
		name     string
		give     []string
		cookie   string
		wantCode int
		wantBody string
	}{
		{"anonymous", nil, "", 200, "anonymous"},
		{"another scheme passes on", []string{"Basic YWxpY2U6c2VjcmV0"}, "", 200, "anonymous"},
		{"valid token", mwBearer(token), "", 200, "alice"},
		{"valid cookie", nil, token, 200, "alice"},
		{"expired token still refused", mwBearer(expired), "", 401, ""},
		{"expired cookie still refused", nil, expired, 401, ""},
		{"malformed token still refused", mwBearer("nope"), "", 401, ""},
		{"invalid request still refused", []string{"Bearer"}, "", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cookies []*http.Cookie
			if tt.cookie != "" {
				cookies = append(cookies, &http.Cookie{Name: "session", Value: tt.cookie})
			}
			r := e.get(t, srv, "/", tt.give, cookies...)
			assert.Equal(t, tt.wantCode, r.status, "body %q", r.body)
			if tt.wantBody != "" {
				assert.Equal(t, tt.wantBody, r.body)
			}
		})
	}
}

func TestMiddleware_Realm(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	tests := []struct {
		name string
		give string
		want string // challenge for no credentials, then for a malformed token
		bad  string
	}{
		{"quoted", `my "app" \ api`, `Bearer realm="my \"app\" \\ api"`, `Bearer realm="my \"app\" \\ api", error="invalid_token", error_description="the token is malformed"`},
		{"control characters", "a\r\nb", `Bearer realm="a  b"`, `Bearer realm="a  b", error="invalid_token", error_description="the token is malformed"`},
		{"none", "", `Bearer`, `Bearer error="invalid_token", error_description="the token is malformed"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e.serve(t, e.db, tokenstore.WithRealm(tt.give))
			assert.Equal(t, tt.want, e.get(t, srv, "/", nil).header.Get("WWW-Authenticate"))
			assert.Equal(t, tt.bad, e.get(t, srv, "/", mwBearer("x")).header.Get("WWW-Authenticate"))
		})
	}
	t.Run("default", func(t *testing.T) {
		h := tokenstore.Middleware(e.db, tokenstore.WithLogger(e.logger))(mwWhoAmI)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		assert.Equal(t, `Bearer realm="api"`, w.Header().Get("WWW-Authenticate"))
	})
}

func TestMiddleware_Schemes(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, _ := e.issue(t, "alice")
	srv := e.serve(t, e.db, tokenstore.WithSchemes("Token"))

	r := e.get(t, srv, "/", []string{"token " + token})
	assert.Equal(t, 200, r.status)
	r = e.get(t, srv, "/", mwBearer(token))
	mwAssertRefused(t, r, 401, `Token realm="test"`, "unauthorized", "authentication required")
	r = e.get(t, srv, "/", []string{"Token"})
	mwAssertRefused(t, r, 400, `Token realm="test", error="invalid_request", error_description="the authorization header has no token"`,
		"invalid_request", "the authorization header has no token")
}

func TestMiddleware_ErrorHandler(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	expired, _ := e.issue(t, "bob", tokenstore.WithPolicy(tokenstore.Absolute(time.Minute)))
	e.clock.Advance(time.Hour)

	type call struct {
		status      int
		code, desc  string
		err         error
		authHeader  string
		requestPath string
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	handler := func(w http.ResponseWriter, r *http.Request, status int, code, description string, err error) {
		mu.Lock()
		calls = append(calls, call{status, code, description, err, w.Header().Get("WWW-Authenticate"), r.URL.Path})
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "custom %s", code)
	}
	srv := e.serve(t, e.db, tokenstore.WithErrorHandler(handler))

	r := e.get(t, srv, "/a", mwBearer(expired))
	assert.Equal(t, 401, r.status)
	assert.Equal(t, "custom invalid_token", r.body)
	r = e.get(t, srv, "/b", nil)
	assert.Equal(t, 401, r.status)
	r = e.get(t, srv, "/c", []string{"Bearer"})
	assert.Equal(t, 400, r.status)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, calls, 3)
	assert.Equal(t, 401, calls[0].status)
	assert.Equal(t, "invalid_token", calls[0].code)
	assert.Equal(t, "the token has expired", calls[0].desc)
	assert.ErrorIs(t, calls[0].err, tokenstore.ErrExpired)
	assert.Equal(t, `Bearer realm="test", error="invalid_token", error_description="the token has expired"`, calls[0].authHeader)
	assert.Equal(t, "/a", calls[0].requestPath)

	assert.Equal(t, "", calls[1].code)
	assert.ErrorIs(t, calls[1].err, tokenstore.ErrNoCredentials)
	assert.Equal(t, `Bearer realm="test"`, calls[1].authHeader)

	assert.Equal(t, "invalid_request", calls[2].code)
	assert.ErrorIs(t, calls[2].err, tokenstore.ErrInvalidRequest)
}

func TestMiddleware_Concurrent(t *testing.T) {
	e := newMWEnv(t, tokenstore.Sliding(time.Hour, 0))
	const workers, requests = 8, 40
	stable := make([]string, workers)
	doomed := make([]string, workers) // revoked while in use
	for i := range workers {
		stable[i], _ = e.issue(t, fmt.Sprintf("user-%d", i))
		doomed[i], _ = e.issue(t, fmt.Sprintf("user-%d", i))
	}
	srv := e.serve(t, e.db)

	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			subject := fmt.Sprintf("user-%d", i)
			for n := range requests {
				r := e.get(t, srv, "/", mwBearer(stable[i]))
				assert.Equal(t, 200, r.status)
				assert.Equal(t, subject, r.body)

				r = e.get(t, srv, "/", mwBearer(doomed[i]))
				if r.status == 200 {
					assert.Equal(t, subject, r.body)
				} else {
					assert.Equal(t, 401, r.status)
				}
				switch n {
				case requests / 2:
					assert.NoError(t, e.db.Revoke(context.Background(), doomed[i]))
				case requests/2 + 1:
					assert.Equal(t, 401, r.status, "revoked before this request")
				}
				if n%10 == 0 {
					e.clock.Advance(time.Minute) // uses slide and get written meanwhile
				}
			}
		})
	}
	wg.Wait()
}

// mwOuterKey and mwInnerKey are context keys set outside and inside ours.
type (
	mwOuterKey struct{}
	mwInnerKey struct{}
)

func TestMiddleware_ContextChain(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	token, issued := e.issue(t, "alice")
	var got []string
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		ctx = context.WithValue(ctx, mwInnerKey{}, "i")
		info, ok := tokenstore.FromContext(ctx)
		got = append(got, fmt.Sprintln(ok, info.ID == issued.ID, info.Subject, ctx.Value(mwOuterKey{}), ctx.Value(mwInnerKey{})))
	})
	h := tokenstore.Middleware(e.db, tokenstore.WithLogger(e.logger))(inner)

	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), mwOuterKey{}, "o"))
	req := httptest.NewRequestWithContext(parent, http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	h.ServeHTTP(httptest.NewRecorder(), req)
	assert.Equal(t, []string{"true true alice o i\n"}, got)

	// Cancellation flows through the authenticated request's context.
	var done <-chan struct{}
	h = tokenstore.Middleware(e.db, tokenstore.WithLogger(e.logger))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done = r.Context().Done()
	}))
	h.ServeHTTP(httptest.NewRecorder(), req)
	require.NotNil(t, done)
	cancelParent()
	<-done
}

func TestMiddleware_NoExpiresAt(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	never := mwValidatorFunc(func(context.Context, string) (tokenstore.Info, error) {
		return tokenstore.Info{Subject: "robot"}, nil // a Validator whose tokens never expire
	})
	srv := e.serve(t, never)
	r := e.get(t, srv, "/", mwBearer("anything"))
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "robot", r.body)
	assert.NotContains(t, r.header, "Token-Expires")
}

func TestFromContext(t *testing.T) {
	info, ok := tokenstore.FromContext(context.Background())
	assert.False(t, ok)
	assert.Zero(t, info)
}

func TestMiddleware_Panics(t *testing.T) {
	e := newMWEnv(t, tokenstore.Policy{})
	assert.PanicsWithValue(t, "tokenstore: Middleware: nil Validator", func() { tokenstore.Middleware(nil) })
	assert.Panics(t, func() { tokenstore.Middleware(e.db, tokenstore.WithSchemes()) })
	assert.Panics(t, func() { tokenstore.Middleware(e.db, tokenstore.WithSchemes("Bearer", "two words")) })
	assert.Panics(t, func() { tokenstore.Middleware(e.db)(nil) })
	assert.NotPanics(t, func() { tokenstore.Middleware(e.db, nil)(mwWhoAmI) })
}

// BenchmarkMiddleware compares the bare Validate call with the same call
// through the middleware, on one pre-issued set of tokens, in parallel:
// the difference is the middleware's cost per request. Overhead measures
// that cost alone, and WithContext the part of it no middleware avoids.
func BenchmarkMiddleware(b *testing.B) {
	const n = 1024
	db, err := tokenstore.Open(filepath.Join(b.TempDir(), "tokens.db"), &tokenstore.Options{SweepInterval: -1})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, db.Close()) })
	reqs := make([]tokenstore.IssueRequest, n)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: fmt.Sprintf("user-%d", i)}
	}
	issued, err := db.IssueBatch(context.Background(), reqs)
	require.NoError(b, err)
	tokens := make([]string, n)
	auth := make([][]string, n) // Authorization header values
	for i, is := range issued {
		tokens[i] = is.Token
		auth[i] = []string{"Bearer " + is.Token}
	}
	// Each goroutine sends one request with a token after another, as a
	// server parses one request after another into fresh memory.
	newRequest := func() *http.Request { return httptest.NewRequest(http.MethodGet, "/api/me", nil) }
	ctx := context.Background()
	for _, tok := range tokens { // warm the cache as a running server would be
		_, err := db.Validate(ctx, tok)
		require.NoError(b, err)
	}

	b.Run("Validate", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := db.Validate(ctx, tokens[i%n]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
	through := func(v tokenstore.Validator) func(b *testing.B) {
		return func(b *testing.B) {
			var ok atomic.Int64
			h := tokenstore.Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, found := tokenstore.FromContext(r.Context()); found {
					ok.Add(1)
				}
			}))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w, r := &mwDiscard{h: http.Header{}}, newRequest()
				i := 0
				for pb.Next() {
					r.Header["Authorization"] = auth[i%n]
					h.ServeHTTP(w, r)
					i++
				}
			})
			if ok.Load() == 0 {
				b.Fatal("no request was authenticated")
			}
		}
	}
	// Middleware is Validate plus the middleware's own work.
	b.Run("Middleware", through(db))
	// Overhead is the middleware's own work alone, over a Validator that
	// answers at once with a fixed Info.
	info, err := db.Lookup(ctx, tokens[0])
	require.NoError(b, err)
	b.Run("Overhead", through(mwValidatorFunc(func(context.Context, string) (tokenstore.Info, error) {
		return info, nil
	})))
	// WithContext is the least any middleware that hands a value to the
	// next handler pays, r.WithContext(context.WithValue(...)): the floor
	// under Overhead, to read this machine's figures against.
	b.Run("WithContext", func(b *testing.B) {
		h := &mwFloor{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), info: &info}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w, r := &mwDiscard{h: http.Header{}}, newRequest()
			i := 0
			for pb.Next() {
				r.Header["Authorization"] = auth[i%n]
				h.ServeHTTP(w, r)
				i++
			}
		})
	})
}

// mwFloor hands info to next as a minimal middleware would.
type mwFloor struct {
	next http.Handler
	info *tokenstore.Info
}

func (f *mwFloor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), mwOuterKey{}, f.info)))
}

// mwDiscard is a ResponseWriter that keeps nothing.
type mwDiscard struct{ h http.Header }

func (d *mwDiscard) Header() http.Header         { return d.h }
func (d *mwDiscard) Write(p []byte) (int, error) { return len(p), nil }
func (d *mwDiscard) WriteHeader(int)             {}
