package grpcauth_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tokenstore/tokenstore/internal/logtest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/grpcauth"
	"github.com/tokenstore/tokenstore/internal/redistest"
	"github.com/tokenstore/tokenstore/redisstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// The tests run every case on both backends: a bbolt file and a real
// redis-server, started once by TestMain on a free loopback port.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Shared(m))
}

var prefixes atomic.Int64

// backend opens an empty store on a clock of its own.
type backend struct {
	name string
	open func(t testing.TB, now func() time.Time) tokenstore.Store
}

var backends = []backend{
	{"bbolt", func(t testing.TB, now func() time.Time) tokenstore.Store {
		db, err := tokenstore.Open(filepath.Join(t.TempDir(), "tokens.db"), &tokenstore.Options{Now: now, SweepInterval: -1})
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, db.Close()) })
		return db
	}},
	{"redis", func(t testing.TB, now func() time.Time) tokenstore.Store {
		c := redis.NewClient(&redis.Options{
			Addr:                     redistest.Addr(t),
			DisableIdentity:          true, // CLIENT SETINFO is Redis 7.2+
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		s, err := redisstore.New(c, &redisstore.Options{
			KeyPrefix:     fmt.Sprintf("grpcauth%d:", prefixes.Add(1)),
			Now:           now,
			SweepInterval: -1,
		})
		require.NoError(t, err)
		t.Cleanup(func() {
			assert.NoError(t, s.Close())
			assert.NoError(t, c.Close())
		})
		return s
	}},
}

// forEachBackend runs fn as a subtest on each backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// testService answers with the caller's subject and scopes, as
// FromContext gives them to the handler.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (testService) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	info, ok := tokenstore.FromContext(ctx)
	if !ok {
		return &testgrpc.SimpleResponse{Username: "anonymous"}, nil
	}
	return &testgrpc.SimpleResponse{Username: info.Subject, OauthScope: strings.Join(info.Scopes(), " ")}, nil
}

func (testService) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// StreamingOutputCall sends the subject three times.
func (testService) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	info, ok := tokenstore.FromContext(stream.Context())
	if !ok {
		return status.Error(codes.Internal, "no Info in the stream's context")
	}
	for range 3 {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(info.Subject)}}); err != nil {
			return err
		}
	}
	return nil
}

// env is a store, a gRPC server on a loopback TCP port that uses it, and a
// client connected to that server.
type env struct {
	t      *testing.T
	store  tokenstore.Store
	clock  *tokenstoretest.Clock
	logs   *logtest.Buffer
	logger *slog.Logger
	addr   string
	client testgrpc.TestServiceClient
	health healthpb.HealthClient

	mu      sync.Mutex
	secrets []string
	errs    []error // what the interceptors returned, as an outer interceptor sees it
}

const (
	unaryMethod  = "/grpc.testing.TestService/UnaryCall"
	emptyMethod  = "/grpc.testing.TestService/EmptyCall"
	streamMethod = "/grpc.testing.TestService/StreamingOutputCall"
)

// newEnv starts the server with the interceptors of opts (plus a logger at
// Debug) after an interceptor that records their errors. On cleanup it
// checks that no log line and no recorded error holds a token.
func newEnv(t *testing.T, b backend, opts ...grpcauth.Option) *env {
	t.Helper()
	e := &env{t: t, clock: tokenstoretest.NewClock(), logs: &logtest.Buffer{}}
	e.logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.store = b.open(t, e.clock.Now)
	opts = append([]grpcauth.Option{grpcauth.WithLogger(e.logger)}, opts...)

	record := func(err error) error {
		if err != nil {
			e.mu.Lock()
			e.errs = append(e.errs, err)
			e.mu.Unlock()
		}
		return err
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				resp, err := h(ctx, req)
				return resp, record(err)
			},
			grpcauth.UnaryServerInterceptor(e.store, opts...)),
		grpc.ChainStreamInterceptor(
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				return record(h(srv, ss))
			},
			grpcauth.StreamServerInterceptor(e.store, opts...)),
	)
	testgrpc.RegisterTestServiceServer(srv, testService{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e.addr = lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	e.client = testgrpc.NewTestServiceClient(conn)
	e.health = healthpb.NewHealthClient(conn)
	t.Cleanup(func() {
		assert.NoError(t, conn.Close())
		srv.Stop()
		assert.NoError(t, <-served)
		logs := e.logs.String()
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, s := range e.secrets {
			assert.NotContains(t, logs, s, "a log line holds a token")
			for _, err := range e.errs {
				assert.NotContains(t, err.Error(), s, "an error holds a token")
			}
		}
	})
	return e
}

func (e *env) issue(subject string, opts ...tokenstore.IssueOption) string {
	e.t.Helper()
	token, _, err := e.store.Issue(context.Background(), subject, opts...)
	require.NoError(e.t, err)
	return e.remember(token)
}

func (e *env) remember(token string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, token)
	return token
}

// lastErr returns the error the interceptors returned last.
func (e *env) lastErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) == 0 {
		return nil
	}
	return e.errs[len(e.errs)-1]
}

// withAuth returns a context whose calls carry the authorization values.
func withAuth(values ...string) context.Context {
	ctx := context.Background()
	for _, v := range values {
		ctx = metadata.AppendToOutgoingContext(ctx, grpcauth.MetadataKey, v)
	}
	return ctx
}

// unary calls UnaryCall with the authorization values, and checks that
// the status the client gets holds no token.
func (e *env) unary(values ...string) (*testgrpc.SimpleResponse, error) {
	e.t.Helper()
	resp, err := e.client.UnaryCall(withAuth(values...), &testgrpc.SimpleRequest{})
	e.noSecret(err)
	return resp, err
}

// stream opens StreamingOutputCall and reads it to its end.
func (e *env) stream(values ...string) ([]string, error) {
	e.t.Helper()
	s, err := e.client.StreamingOutputCall(withAuth(values...), &testgrpc.StreamingOutputCallRequest{})
	require.NoError(e.t, err) // the status comes with the first Recv
	var got []string
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			e.noSecret(err)
			return got, err
		}
		got = append(got, string(m.GetPayload().GetBody()))
	}
}

func (e *env) noSecret(err error) {
	e.t.Helper()
	if err == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.secrets {
		assert.NotContains(e.t, err.Error(), s, "the client's status holds a token")
	}
}

// assertStatus checks the code and message the client got.
func assertStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	assert.Equal(t, code, st.Code(), "status %v", st)
	assert.Equal(t, msg, st.Message())
}

func bearer(token string) string { return "Bearer " + token }

func TestUnary_Authentication(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		valid := e.issue("alice", tokenstore.WithScopes("read"))
		expired := e.issue("bob", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
		revoked := e.issue("carol")
		require.NoError(t, e.store.Revoke(context.Background(), revoked))
		format, err := tokenstore.NewFormat("")
		require.NoError(t, err)
		unknown, _ := format.Generate()
		e.remember(unknown)
		e.clock.Advance(2 * time.Hour)

		// Spaces around the value are not part of it, as in an HTTP header
		// (RFC 9110 §5.5), where net/http trims them before the middleware.
		for _, give := range [][]string{{bearer(valid)}, {"Token " + valid}, {"bearer   " + valid}, {bearer(valid) + " "}, {"  " + bearer(valid)}} {
			resp, err := e.unary(give...)
			require.NoError(t, err, "%q", give[0][:8])
			assert.Equal(t, "alice", resp.GetUsername())
			assert.Equal(t, "read", resp.GetOauthScope())
		}

		tests := []struct {
			name string
			give []string
			want error // what the server sees, with errors.Is
			log  string
		}{
			{"no token", nil, tokenstore.ErrNoCredentials, "request carries no token"},
			{"empty value", []string{""}, tokenstore.ErrNoCredentials, "request carries no token"},
			{"another scheme", []string{"Basic YWxpY2U6c2VjcmV0"}, tokenstore.ErrNoCredentials, "credentials of another scheme"},
			{"scheme with no token", []string{"Bearer"}, tokenstore.ErrInvalidRequest, "a scheme with no token"},
			{"token with spaces", []string{bearer(valid + " " + valid)}, tokenstore.ErrInvalidRequest, "a token with spaces"},
			{"two values", []string{bearer(valid), bearer(valid)}, tokenstore.ErrInvalidRequest, "more than one authorization value"},
			{"malformed", []string{bearer("not-a-token")}, tokenstore.ErrMalformed, "malformed token"},
			{"unknown", []string{bearer(unknown)}, tokenstore.ErrNotFound, "token not found"},
			{"revoked", []string{bearer(revoked)}, tokenstore.ErrNotFound, "token not found"},
			{"expired", []string{bearer(expired)}, tokenstore.ErrExpired, "token has expired"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := e.unary(tt.give...)
				assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
				serverErr := e.lastErr()
				require.ErrorIs(t, serverErr, tt.want, "the server's error")
				assert.Equal(t, codes.Unauthenticated, status.Code(serverErr))
				assert.Contains(t, serverErr.Error(), tt.log)
				assert.Contains(t, e.logs.String(), tt.log, "the log says why")
			})
		}
		assert.Contains(t, e.logs.String(), `"method":"`+unaryMethod+`"`)
		assert.Contains(t, e.logs.String(), `"peer":"127.0.0.1:`)
	})
}

func TestStream_Authentication(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		valid := e.issue("alice")
		revoked := e.issue("carol")
		require.NoError(t, e.store.Revoke(context.Background(), revoked))

		got, err := e.stream(bearer(valid))
		require.NoError(t, err)
		assert.Equal(t, []string{"alice", "alice", "alice"}, got, "the handler's stream context carries the Info")

		for _, tt := range []struct {
			give []string
			want error
		}{{nil, tokenstore.ErrNoCredentials}, {[]string{bearer(revoked)}, tokenstore.ErrNotFound}, {[]string{bearer("x")}, tokenstore.ErrMalformed}} {
			got, err := e.stream(tt.give...)
			assert.Empty(t, got)
			assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
			assert.ErrorIs(t, e.lastErr(), tt.want)
		}
	})
}

func TestScopes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b,
			grpcauth.WithMethodScopes(map[string][]string{
				emptyMethod:                   {"admin"},
				"/grpc.testing.OtherService/": {"never"}, // another service's rule does not apply
			}),
			grpcauth.WithDefaultScopes("read"))
		reader := e.issue("alice", tokenstore.WithScopes("read"))
		admin := e.issue("root", tokenstore.WithScopes("admin"))
		both := e.issue("both", tokenstore.WithScopes("admin", "read"))
		none := e.issue("nobody")

		resp, err := e.unary(bearer(reader))
		require.NoError(t, err)
		assert.Equal(t, "alice", resp.GetUsername())
		_, err = e.client.EmptyCall(withAuth(bearer(reader)), &testgrpc.Empty{})
		assertStatus(t, err, codes.PermissionDenied, grpcauth.MessagePermissionDenied+": requires admin")
		serverErr := e.lastErr()
		assert.ErrorIs(t, serverErr, tokenstore.ErrInsufficientScope)
		assert.EqualError(t, serverErr, `grpcauth: PermissionDenied: insufficient scope: /grpc.testing.TestService/EmptyCall requires "admin"`)

		_, err = e.client.EmptyCall(withAuth(bearer(admin)), &testgrpc.Empty{})
		require.NoError(t, err, "the method's own scopes replace the default")
		_, err = e.unary(bearer(admin))
		assertStatus(t, err, codes.PermissionDenied, grpcauth.MessagePermissionDenied+": requires read")
		_, err = e.unary(bearer(none))
		assertStatus(t, err, codes.PermissionDenied, grpcauth.MessagePermissionDenied+": requires read")

		got, err := e.stream(bearer(both))
		require.NoError(t, err)
		assert.Len(t, got, 3)
		_, err = e.stream(bearer(admin))
		assertStatus(t, err, codes.PermissionDenied, grpcauth.MessagePermissionDenied+": requires read")

		// A token with no scope at all is still first a token: a bad one
		// is Unauthenticated, never PermissionDenied.
		_, err = e.unary(bearer("x"))
		assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
	})
}

func TestScopes_Service(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, grpcauth.WithMethodScopes(map[string][]string{
			"/grpc.testing.TestService/": {"test"},
			unaryMethod:                  {}, // a method's own entry wins: a token is enough
		}))
		plain := e.issue("alice")
		_, err := e.unary(bearer(plain))
		require.NoError(t, err)
		_, err = e.client.EmptyCall(withAuth(bearer(plain)), &testgrpc.Empty{})
		assertStatus(t, err, codes.PermissionDenied, grpcauth.MessagePermissionDenied+": requires test")
		_, err = e.stream(bearer(plain))
		assertStatus(t, err, codes.PermissionDenied, grpcauth.MessagePermissionDenied+": requires test")
	})
}

func TestPublicMethods(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, grpcauth.WithPublicMethods(grpcauth.HealthService, emptyMethod))
		for _, ctx := range []context.Context{withAuth(), withAuth(bearer("garbage"))} {
			resp, err := e.health.Check(ctx, &healthpb.HealthCheckRequest{})
			require.NoError(t, err, "a health check needs no token, and a bad one does not matter")
			assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
			_, err = e.client.EmptyCall(ctx, &testgrpc.Empty{})
			require.NoError(t, err)
		}
		_, err := e.unary()
		assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
	})
}

// TestPublicMethods_NameTricks calls, through a raw connection, method
// names crafted to look public (or to dodge a method's own scopes) while
// reaching a protected handler: none reaches it, with or without a token.
// It holds because grpc-go dispatches on the same ":path" the interceptors
// see, and refuses a path without its leading '/' (which would otherwise
// miss the method's entry and fall back to the default scopes).
func TestPublicMethods_NameTricks(t *testing.T) {
	e := newEnv(t, backends[0],
		grpcauth.WithPublicMethods(grpcauth.HealthService, emptyMethod),
		grpcauth.WithMethodScopes(map[string][]string{unaryMethod: {"admin"}}))
	token := e.issue("alice")
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, conn.Close()) })
	for _, method := range []string{
		"grpc.testing.TestService/UnaryCall",
		"//grpc.testing.TestService/UnaryCall",
		"/grpc.testing.TestService/UnaryCall/",
		"/grpc.health.v1.Health/../grpc.testing.TestService/UnaryCall",
		"/grpc.health.v1.Health//grpc.testing.TestService/UnaryCall",
		"/grpc.testing.TestService/EmptyCall/../UnaryCall",
		"/grpc.testing.TestService/UnaryCall?/grpc.health.v1.Health/",
		"/grpc.testing.TestService/UnaryCall%00",
		"/Grpc.testing.TestService/UnaryCall",
	} {
		for _, ctx := range []context.Context{withAuth(), withAuth(bearer(token))} {
			var resp testgrpc.SimpleResponse
			err := conn.Invoke(ctx, method, &testgrpc.SimpleRequest{}, &resp)
			require.Error(t, err, "%q reached a handler as %q", method, resp.GetUsername())
			assert.Contains(t, []codes.Code{codes.Unimplemented, codes.Unauthenticated, codes.PermissionDenied}, status.Code(err), "%q: %v", method, err)
		}
	}
	// The real names, for contrast: the public one runs, the scoped one
	// refuses a token without its scope.
	require.NoError(t, conn.Invoke(withAuth(), emptyMethod, &testgrpc.Empty{}, &testgrpc.Empty{}))
	err = conn.Invoke(withAuth(bearer(token)), unaryMethod, &testgrpc.SimpleRequest{}, &testgrpc.SimpleResponse{})
	assertStatus(t, err, codes.PermissionDenied, grpcauth.MessagePermissionDenied+": requires admin")
}

// TestRevoked_HTTPAndGRPC serves one store over HTTP and gRPC, as an
// application that speaks both does: a token works on both until it is
// revoked, then neither accepts it, on a connection already open.
func TestRevoked_HTTPAndGRPC(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		token := e.issue("alice", tokenstore.WithScopes("read"))
		httpSrv := httptest.NewServer(tokenstore.Middleware(e.store, tokenstore.WithLogger(e.logger))(
			tokenstore.RequireScopes("read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				info, _ := tokenstore.FromContext(r.Context())
				_, _ = io.WriteString(w, info.Subject)
			}))))
		t.Cleanup(httpSrv.Close)
		get := func() (int, string) {
			req, err := http.NewRequest(http.MethodGet, httpSrv.URL, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", bearer(token))
			resp, err := httpSrv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			return resp.StatusCode, string(body)
		}

		code, body := get()
		require.Equal(t, 200, code, body)
		assert.Equal(t, "alice", body)
		resp, err := e.unary(bearer(token))
		require.NoError(t, err)
		assert.Equal(t, "alice", resp.GetUsername())

		require.NoError(t, e.store.Revoke(context.Background(), token))

		code, body = get()
		assert.Equal(t, 401, code)
		assert.NotContains(t, body, token)
		_, err = e.unary(bearer(token))
		assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
		assert.ErrorIs(t, e.lastErr(), tokenstore.ErrNotFound)
		_, err = e.stream(bearer(token))
		assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
	})
}

func TestSlidingTokenSlides(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		token := e.issue("alice", tokenstore.WithPolicy(tokenstore.Sliding(time.Hour, 0)))
		for range 3 { // three hours of calls, each within the hour
			e.clock.Advance(50 * time.Minute)
			_, err := e.unary(bearer(token))
			require.NoError(t, err, "each call counts as a use")
		}
		e.clock.Advance(61 * time.Minute)
		_, err := e.unary(bearer(token))
		assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
		assert.ErrorIs(t, e.lastErr(), tokenstore.ErrExpired)
	})
}

func TestStoreClosed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		token := e.issue("alice")
		require.NoError(t, e.store.Close())
		_, err := e.unary(bearer(token))
		assertStatus(t, err, codes.Unavailable, grpcauth.MessageUnavailable)
		assert.ErrorIs(t, e.lastErr(), tokenstore.ErrClosed)
		assert.Contains(t, e.logs.String(), `"level":"WARN"`)
	})
}

// failing is a Validator that fails as a broken store would, naming the
// token in its error against the contract.
type failing struct{}

func (failing) Validate(_ context.Context, token string) (tokenstore.Info, error) {
	return tokenstore.Info{}, fmt.Errorf("disk on fire while reading %s", token)
}

func TestValidatorFails(t *testing.T) {
	var logs logtest.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	intercept := grpcauth.UnaryServerInterceptor(failing{}, grpcauth.WithLogger(logger))
	const token = "secret_0123456789"
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", bearer(token)))
	called := false
	_, err := intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: unaryMethod}, func(context.Context, any) (any, error) {
		called = true
		return nil, nil
	})
	assert.False(t, called)
	assertStatus(t, err, codes.Internal, grpcauth.MessageInternal)
	assert.Equal(t, "grpcauth: Internal: disk on fire while reading [token]", err.Error())
	assert.Contains(t, logs.String(), `"level":"ERROR"`)
	assert.Contains(t, logs.String(), "disk on fire while reading [token]")
	assert.NotContains(t, logs.String(), token)

	// A call that ended before its token was checked gets its context's code.
	ended, cancel := context.WithCancel(ctx)
	cancel()
	canceled := grpcauth.UnaryServerInterceptor(validatorFunc(func(ctx context.Context, _ string) (tokenstore.Info, error) {
		return tokenstore.Info{}, ctx.Err()
	}), grpcauth.WithLogger(logger))
	_, err = canceled(ended, nil, &grpc.UnaryServerInfo{FullMethod: unaryMethod}, nil)
	assert.Equal(t, codes.Canceled, status.Code(err))
	assert.ErrorIs(t, err, context.Canceled)
}

// TestValidatorTimesOut: a store that does not answer in time while the
// call is still alive, or cannot write what the check needs (a read-only
// Redis replica refusing the write that ends a grace), is Unavailable,
// which gRPC clients retry: as the HTTP middleware's 503.
func TestValidatorTimesOut(t *testing.T) {
	for name, give := range map[string]error{
		"its own deadline":   fmt.Errorf("redisstore: validate: %w", context.DeadlineExceeded),
		"a network timeout":  &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded},
		"a read-only server": fmt.Errorf("redisstore: validate: the grace could not be ended: %w", tokenstore.ErrReadOnly),
	} {
		t.Run(name, func(t *testing.T) {
			var logs logtest.Buffer
			intercept := grpcauth.UnaryServerInterceptor(validatorFunc(func(context.Context, string) (tokenstore.Info, error) {
				return tokenstore.Info{}, give
			}), grpcauth.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", bearer("secret_0123456789")))
			_, err := intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: unaryMethod}, nil)
			assertStatus(t, err, codes.Unavailable, grpcauth.MessageUnavailable)
			assert.Contains(t, logs.String(), `"level":"WARN"`)
		})
	}
}

type validatorFunc func(context.Context, string) (tokenstore.Info, error)

func (f validatorFunc) Validate(ctx context.Context, token string) (tokenstore.Info, error) {
	return f(ctx, token)
}

func TestSchemes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, grpcauth.WithSchemes("Bearer"))
		token := e.issue("alice")
		_, err := e.unary(bearer(token))
		require.NoError(t, err)
		_, err = e.unary("Token " + token)
		assertStatus(t, err, codes.Unauthenticated, grpcauth.MessageUnauthenticated)
		assert.ErrorIs(t, e.lastErr(), tokenstore.ErrNoCredentials)
	})
}

func TestPanics(t *testing.T) {
	v := validatorFunc(nil)
	tests := map[string]func(){
		"nil validator":       func() { grpcauth.UnaryServerInterceptor(nil) },
		"no scheme":           func() { grpcauth.UnaryServerInterceptor(v, grpcauth.WithSchemes()) },
		"scheme with a space": func() { grpcauth.StreamServerInterceptor(v, grpcauth.WithSchemes("Bea rer")) },
		"bad method scope": func() {
			grpcauth.UnaryServerInterceptor(v, grpcauth.WithMethodScopes(map[string][]string{unaryMethod: {"a b"}}))
		},
		"bad default scope": func() { grpcauth.UnaryServerInterceptor(v, grpcauth.WithDefaultScopes("")) },
		"method without slash": func() {
			grpcauth.UnaryServerInterceptor(v, grpcauth.WithMethodScopes(map[string][]string{"grpc.testing.TestService/UnaryCall": {"a"}}))
		},
		"public method malformed": func() { grpcauth.UnaryServerInterceptor(v, grpcauth.WithPublicMethods("/a/b/c")) },
		"public and scoped": func() {
			grpcauth.UnaryServerInterceptor(v, grpcauth.WithPublicMethods(unaryMethod),
				grpcauth.WithMethodScopes(map[string][]string{unaryMethod: {"a"}}))
		},
	}
	for name, fn := range tests {
		assert.Panics(t, fn, name)
	}
	assert.NotPanics(t, func() {
		grpcauth.UnaryServerInterceptor(v, nil, grpcauth.WithPublicMethods(grpcauth.HealthService, grpcauth.ReflectionService, grpcauth.ReflectionServiceV1Alpha))
	})
}
