package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/require"
	"github.com/tokenstore/tokenstore/internal/logtest"
	"go.uber.org/goleak"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
	"github.com/tokenstore/tokenstore/internal/redistest"
	"github.com/tokenstore/tokenstore/redisstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// The tests run every endpoint on both backends: a bbolt file, and a
// redis-server started by TestMain on a loopback port (redistest.Addr).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Shared(m))
}

// clock is the suite's clock: it starts at the real time, truncated to
// the millisecond, and moves only when a test moves it.
type clock = tokenstoretest.Clock

func newClock() *clock { return tokenstoretest.NewClock() }

var prefixes atomic.Int64

// backends are the stores every test runs on.
var backends = []struct {
	name string
	open func(t *testing.T, now func() time.Time) tokenstore.Store
}{
	{"file", func(t *testing.T, now func() time.Time) tokenstore.Store {
		db, err := tokenstore.Open(filepath.Join(t.TempDir(), "tokens.db"), &tokenstore.Options{Now: now, SweepInterval: -1})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, db.Close()) })
		return db
	}},
	{"redis", func(t *testing.T, now func() time.Time) tokenstore.Store {
		c := redis.NewClient(&redis.Options{
			Addr:                     redistest.Addr(t),
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		s, err := redisstore.New(c, &redisstore.Options{
			KeyPrefix: fmt.Sprintf("admintest%d:", prefixes.Add(1)), Now: now, SweepInterval: -1,
			TouchInterval: -1, // every use written, so that a test sees it, as the file store shows uses from memory
		})
		require.NoError(t, err)
		t.Cleanup(func() {
			require.NoError(t, s.Close())
			require.NoError(t, c.Close())
		})
		return s
	}},
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open) })
	}
}

// env is an application on a real loopback server: the admin handler
// under /admin/, and an API route behind the middleware, on one store.
type env struct {
	t      *testing.T
	store  tokenstore.Store
	calls  *countingStore
	clock  *clock
	srv    *httptest.Server
	admin  string // a token with the admin scope
	logs   *logtest.Buffer
	tokens []string // every token issued, to look for in responses and logs
}

func newEnv(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store, o *admin.Options) *env {
	t.Helper()
	clk := newClock()
	st := open(t, clk.Now)
	e := &env{t: t, clock: clk, logs: &logtest.Buffer{}}
	e.calls = &countingStore{Store: st}
	e.store = e.calls
	if _, ok := st.(*tokenstore.DB); ok {
		e.store = countingDB{e.calls}
	}
	if o == nil {
		o = &admin.Options{}
	}
	o.Now = clk.Now
	o.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.InsecureCookies = true
	h, err := admin.New(e.store, o)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/admin/", h)
	mux.Handle("/api/hello", tokenstore.Middleware(e.store, tokenstore.WithLogger(o.Logger))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			info, _ := tokenstore.FromContext(r.Context())
			fmt.Fprintf(w, "hello %s\n", info.Subject)
		})))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.admin = e.issue("root", tokenstore.WithMetadata(map[string]string{"scope": "read " + admin.DefaultScope}))
	t.Cleanup(e.checkNoTokenLogged)
	return e
}

// issue issues a token directly on the store.
func (e *env) issue(subject string, opts ...tokenstore.IssueOption) string {
	e.t.Helper()
	token, _, err := e.store.Issue(context.Background(), subject, opts...)
	require.NoError(e.t, err)
	e.tokens = append(e.tokens, token)
	return token
}

func (e *env) issueInfo(subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info) {
	e.t.Helper()
	token, info, err := e.store.Issue(context.Background(), subject, opts...)
	require.NoError(e.t, err)
	e.tokens = append(e.tokens, token)
	return token, info
}

// checkNoTokenLogged fails the test when a log line holds a token.
func (e *env) checkNoTokenLogged() {
	logs := e.logs.String()
	for _, tok := range e.tokens {
		if strings.Contains(logs, tok) {
			e.t.Errorf("a token appears in the logs:\n%s", logs)
		}
	}
}

// response is a response read to its end.
type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	require.Equal(t, "application/json", r.header.Get("Content-Type"), "body: %s", r.body)
	require.NoError(t, json.Unmarshal([]byte(r.body), v), r.body)
}

func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var e admin.Error
	r.json(t, &e)
	require.NotEmpty(t, e.Description)
	return e.Code
}

// req describes one request.
type req struct {
	method, path string
	token        string // Bearer; "" for none
	body         string
	ctype        string
	header       http.Header
}

// do sends q to the server and checks what every response must be: no
// token in it but the one just issued, and the security headers.
func (e *env) do(q req) response {
	e.t.Helper()
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	r, err := http.NewRequest(q.method, e.srv.URL+q.path, body)
	require.NoError(e.t, err)
	if q.token != "" {
		r.Header.Set("Authorization", "Bearer "+q.token)
	}
	if q.ctype != "" {
		r.Header.Set("Content-Type", q.ctype)
	}
	for k, v := range q.header {
		r.Header[k] = v
	}
	return e.send(http.DefaultClient, r)
}

func (e *env) send(c *http.Client, r *http.Request) response {
	e.t.Helper()
	res, err := c.Do(r)
	require.NoError(e.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	resp := response{status: res.StatusCode, header: res.Header, body: string(b)}
	if strings.HasPrefix(r.URL.Path, "/admin/") {
		e.checkHeaders(r, resp)
	}
	e.checkNoToken(r, resp)
	return resp
}

func (e *env) checkHeaders(r *http.Request, resp response) {
	e.t.Helper()
	h := resp.header
	if !strings.HasPrefix(r.URL.Path, "/admin/static/") {
		require.Equal(e.t, "no-store", h.Get("Cache-Control"), "%s %s", r.Method, r.URL.Path)
	}
	require.Contains(e.t, h.Get("Content-Security-Policy"), "default-src 'none'", "%s %s", r.Method, r.URL.Path)
	require.Contains(e.t, h.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	require.NotContains(e.t, h.Get("Content-Security-Policy"), "script-src")
	require.Equal(e.t, "DENY", h.Get("X-Frame-Options"))
	require.Equal(e.t, "nosniff", h.Get("X-Content-Type-Options"))
}

// checkNoToken: no response holds a token, except an issue response its
// own new one.
func (e *env) checkNoToken(r *http.Request, resp response) {
	e.t.Helper()
	var issued string
	if r.Method == http.MethodPost && r.URL.Path == "/admin/api/tokens" && resp.status == http.StatusCreated {
		var is admin.Issued
		require.NoError(e.t, json.Unmarshal([]byte(resp.body), &is))
		issued = is.Token
		e.tokens = append(e.tokens, issued)
	}
	for _, tok := range e.tokens {
		if tok == issued {
			continue
		}
		require.NotContains(e.t, resp.body, tok, "%s %s returned a token", r.Method, r.URL.Path)
		for k, vs := range resp.header {
			for _, v := range vs {
				if k != "Set-Cookie" { // the login cookie holds the admin token, HttpOnly
					require.NotContains(e.t, v, tok, "header %s of %s %s", k, r.Method, r.URL.Path)
				}
			}
		}
	}
}

// hello calls the application's protected route with token.
func (e *env) hello(token string) int {
	e.t.Helper()
	return e.do(req{method: "GET", path: "/api/hello", token: token}).status
}

// browser is an HTTP client with a cookie jar that sends the headers a
// browser sends for a same-origin form.
func (e *env) browser() *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(e.t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// countingStore counts the calls that reach the store.
type countingStore struct {
	tokenstore.Store
	n atomic.Int64
}

func (s *countingStore) count() int64 { return s.n.Load() }

func (s *countingStore) Issue(ctx context.Context, subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info, error) {
	s.n.Add(1)
	return s.Store.Issue(ctx, subject, opts...)
}
func (s *countingStore) Validate(ctx context.Context, token string) (tokenstore.Info, error) {
	s.n.Add(1)
	return s.Store.Validate(ctx, token)
}
func (s *countingStore) Lookup(ctx context.Context, token string) (tokenstore.Info, error) {
	s.n.Add(1)
	return s.Store.Lookup(ctx, token)
}
func (s *countingStore) Get(ctx context.Context, id uuid.UUID) (tokenstore.Info, error) {
	s.n.Add(1)
	return s.Store.Get(ctx, id)
}
func (s *countingStore) List(ctx context.Context, subject string) ([]tokenstore.Info, error) {
	s.n.Add(1)
	return s.Store.List(ctx, subject)
}
func (s *countingStore) Revoke(ctx context.Context, token string) error {
	s.n.Add(1)
	return s.Store.Revoke(ctx, token)
}
func (s *countingStore) RevokeID(ctx context.Context, id uuid.UUID) error {
	s.n.Add(1)
	return s.Store.RevokeID(ctx, id)
}
func (s *countingStore) RevokeSubject(ctx context.Context, subject string) (int, error) {
	s.n.Add(1)
	return s.Store.RevokeSubject(ctx, subject)
}
func (s *countingStore) Rotate(ctx context.Context, token string, opts ...tokenstore.RotateOption) (string, tokenstore.Info, error) {
	s.n.Add(1)
	return s.Store.Rotate(ctx, token, opts...)
}
func (s *countingStore) RevokeFamily(ctx context.Context, familyID uuid.UUID) (int, error) {
	s.n.Add(1)
	return s.Store.RevokeFamily(ctx, familyID)
}
func (s *countingStore) Sweep(ctx context.Context) (int, error) {
	s.n.Add(1)
	return s.Store.Sweep(ctx)
}
func (s *countingStore) Stats() tokenstore.Stats {
	s.n.Add(1)
	return s.Store.Stats()
}

// ForEach passes the walk on, so that the handler sees a Walker.
func (s *countingStore) ForEach(ctx context.Context, fn func(tokenstore.Info) error) error {
	s.n.Add(1)
	return s.Store.(admin.Walker).ForEach(ctx, fn)
}

// countingDB is a countingStore on a *tokenstore.DB, with its FileInfo.
type countingDB struct{ *countingStore }

func (s countingDB) FileInfo(ctx context.Context) (tokenstore.FileInfo, error) {
	s.n.Add(1)
	return s.Store.(*tokenstore.DB).FileInfo(ctx)
}

func httptestServer(t *testing.T, h http.Handler) string {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}
