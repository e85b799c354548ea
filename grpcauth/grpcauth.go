// Package grpcauth authenticates gRPC calls with tokenstore tokens: the
// unary and stream server interceptors of [tokenstore.Middleware], for
// services that speak gRPC as well as (or instead of) HTTP.
//
//	v := db // a *tokenstore.DB, a redisstore.Store: any tokenstore.Validator
//	opts := []grpcauth.Option{
//		grpcauth.WithMethodScopes(map[string][]string{
//			"/shop.Orders/Create": {"orders:write"},
//		}),
//		grpcauth.WithDefaultScopes("orders:read"),
//		grpcauth.WithPublicMethods(grpcauth.HealthService),
//	}
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(grpcauth.UnaryServerInterceptor(v, opts...)),
//		grpc.ChainStreamInterceptor(grpcauth.StreamServerInterceptor(v, opts...)),
//	)
//
// A handler finds the caller's token with [tokenstore.FromContext].
//
// Each call is checked on every call, as the HTTP middleware checks each
// request: a revoked token is refused by the next call, on a connection
// already open as on a new one. Clients send the token in the
// "authorization" metadata, "Bearer <token>" (RFC 6750 §2.1, as gRPC's own
// oauth credentials do); grpc-go clients can use
// [google.golang.org/grpc/credentials/oauth.TokenSource] or
// metadata.AppendToOutgoingContext.
package grpcauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/backend"
)

// Services to pass to [WithPublicMethods] so that probes and tools work
// without a token.
const (
	// HealthService is the standard health checking service
	// (google.golang.org/grpc/health), which load balancers and
	// Kubernetes probe without credentials.
	HealthService = "/grpc.health.v1.Health/"
	// ReflectionService is server reflection (grpcurl, grpcui).
	ReflectionService = "/grpc.reflection.v1.ServerReflection/"
	// ReflectionServiceV1Alpha is the older server reflection that many
	// tools still call.
	ReflectionServiceV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/"
)

// MetadataKey is the metadata key that carries the token, as the HTTP
// Authorization header does.
const MetadataKey = "authorization"

// Status messages sent to clients. They are the same whatever the precise
// reason, so that a client cannot probe which tokens exist, were revoked
// or have expired; the server has the reason (see [UnaryServerInterceptor]).
const (
	MessageUnauthenticated  = "missing or invalid token"
	MessagePermissionDenied = "the token lacks a required scope"
	MessageUnavailable      = "the service is temporarily unavailable"
	MessageInternal         = "internal error"
)

// Option configures the interceptors.
type Option func(*config)

type config struct {
	schemes       []string
	methodScopes  map[string][]string
	defaultScopes []string
	public        []string
	logger        *slog.Logger
}

// WithSchemes sets the authentication schemes accepted in the
// authorization metadata, matched case-insensitively, as
// [tokenstore.WithSchemes] does for HTTP. Default "Bearer" and "Token",
// as the HTTP middleware. The interceptors panic when the list is empty or
// a name is not an HTTP token.
func WithSchemes(schemes ...string) Option {
	return func(c *config) { c.schemes = slices.Clone(schemes) }
}

// WithMethodScopes sets the scopes each method requires (see
// [tokenstore.Info.HasScopes]). A key is a full method name,
// "/package.Service/Method" (grpc.UnaryServerInfo.FullMethod), or a whole
// service, "/package.Service/"; a method's own entry wins over its
// service's, and either over [WithDefaultScopes]. An entry with no scopes
// requires only a valid token. m is copied. A later WithMethodScopes
// replaces an earlier one.
func WithMethodScopes(m map[string][]string) Option {
	c := make(map[string][]string, len(m))
	for k, v := range m {
		c[k] = slices.Clone(v)
	}
	return func(cfg *config) { cfg.methodScopes = c }
}

// WithDefaultScopes sets the scopes a method requires when
// [WithMethodScopes] has no entry for it or its service. Default none: a
// valid token is enough.
func WithDefaultScopes(scopes ...string) Option {
	return func(c *config) { c.defaultScopes = slices.Clone(scopes) }
}

// WithPublicMethods lets methods be called with no token at all: full
// method names or whole services ("/package.Service/"), such as
// [HealthService] and [ReflectionService]. Their calls are not checked,
// even when they carry a token, and their handlers find no Info in their
// context. Default none: every method needs a token. Calls accumulate.
func WithPublicMethods(methods ...string) Option {
	return func(c *config) { c.public = append(c.public, methods...) }
}

// WithLogger sets where the interceptors report refused calls (at level
// Debug, with the precise reason), a closed store (Warn) and store failures
// (Error), with the method and the peer's address, never the token.
// Default [slog.Default].
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// UnaryServerInterceptor returns an interceptor that authenticates each
// unary call with a token checked by v (see [StreamServerInterceptor] for
// streams, which behave the same):
//
//   - a method made public by [WithPublicMethods]: the handler runs,
//     unchecked;
//   - no token, credentials of another scheme, a malformed request (two
//     authorization values, a scheme with no token, a token with spaces),
//     or a malformed, unknown, revoked or expired token, or one rotated away
//     and presented after its grace ([tokenstore.ErrReused], whose family
//     the store has revoked): codes.Unauthenticated with
//     [MessageUnauthenticated];
//   - a valid token without a scope the method requires:
//     codes.PermissionDenied with [MessagePermissionDenied] and the scopes
//     required;
//   - v fails: codes.Unavailable when the store is closed
//     ([tokenstore.ErrClosed]), did not answer in time (its own deadline,
//     a network timeout) or could not write what the check needs
//     ([tokenstore.ErrReadOnly]: a Redis replica refusing the write that
//     ends a rotated token's grace), the context's code when the call
//     ended first, codes.Internal otherwise;
//   - otherwise the handler runs, and [tokenstore.FromContext] gives it the
//     token's Info; v.Validate has counted the use, so a sliding token has
//     slid.
//
// The client gets only the code and that fixed message. The server gets the
// reason twice: in the log (see [WithLogger]), and in the error the
// interceptor returns, which an interceptor chained before this one can
// test with [errors.Is] against [tokenstore.ErrNoCredentials],
// [tokenstore.ErrInvalidRequest], [tokenstore.ErrExpired], [tokenstore.ErrReused],
// [tokenstore.ErrInsufficientScope] and the rest. Neither holds the token.
//
// It panics when v is nil or an option is invalid: an empty scheme list, a
// scheme that is not an HTTP token, a scope that is not an RFC 6749
// scope-token, a method name that does not start with '/' and name a
// service, or a method both public and given scopes.
func UnaryServerInterceptor(v tokenstore.Validator, opts ...Option) grpc.UnaryServerInterceptor {
	a := newAuthenticator(v, opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor returns an interceptor that authenticates each
// stream when it opens, as [UnaryServerInterceptor] does each unary call;
// the handler's stream.Context() carries the Info. A stream that outlives
// its token's revocation or expiry is not cut off: end long-lived streams
// on your own schedule if that matters.
func StreamServerInterceptor(v tokenstore.Validator, opts ...Option) grpc.StreamServerInterceptor {
	a := newAuthenticator(v, opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if ctx != ss.Context() {
			ss = &serverStream{ServerStream: ss, ctx: ctx}
		}
		return handler(srv, ss)
	}
}

// serverStream is a stream whose Context carries the Info.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }

// rule is what a method requires.
type rule struct {
	public bool
	scopes []string
	scope  string // scopes, space-separated, for messages
}

// authenticator is the interceptors' shared, immutable state.
type authenticator struct {
	v        tokenstore.Validator
	schemes  []string
	rules    map[string]*rule // by full method or "/service/"
	fallback *rule            // WithDefaultScopes
	logger   *slog.Logger
}

func newAuthenticator(v tokenstore.Validator, opts []Option) *authenticator {
	if v == nil {
		panic("grpcauth: nil Validator")
	}
	c := config{schemes: []string{"Bearer", "Token"}}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if len(c.schemes) == 0 {
		panic("grpcauth: WithSchemes with no scheme")
	}
	for _, s := range c.schemes {
		if !httpguts.ValidHeaderFieldName(s) {
			panic(fmt.Sprintf("grpcauth: scheme %q is not an HTTP token", s))
		}
	}
	a := &authenticator{v: v, schemes: c.schemes, rules: map[string]*rule{}, logger: c.logger}
	if a.logger == nil {
		a.logger = slog.Default()
	}
	a.fallback = newRule(c.defaultScopes, "WithDefaultScopes")
	for m, scopes := range c.methodScopes {
		checkMethod(m)
		a.rules[m] = newRule(scopes, m)
	}
	for _, m := range c.public {
		checkMethod(m)
		if r, ok := a.rules[m]; ok && !r.public {
			panic(fmt.Sprintf("grpcauth: method %q is both public and given scopes", m))
		}
		a.rules[m] = &rule{public: true}
	}
	return a
}

func newRule(scopes []string, what string) *rule {
	if err := tokenstore.ValidateScopes(scopes...); err != nil {
		panic(fmt.Sprintf("grpcauth: %s: %s", what, strings.TrimPrefix(err.Error(), "tokenstore: ")))
	}
	return &rule{scopes: scopes, scope: strings.Join(scopes, " ")}
}

// checkMethod panics unless m is "/service/" or "/service/method".
func checkMethod(m string) {
	if !strings.HasPrefix(m, "/") || strings.Count(m, "/") != 2 || strings.HasPrefix(m, "//") {
		panic(fmt.Sprintf("grpcauth: method %q is neither \"/package.Service/Method\" nor \"/package.Service/\"", m))
	}
}

// ruleFor returns what method requires: its own rule, its service's, or
// the default.
func (a *authenticator) ruleFor(method string) *rule {
	if r, ok := a.rules[method]; ok {
		return r
	}
	if i := strings.LastIndexByte(method, '/'); i > 0 {
		if r, ok := a.rules[method[:i+1]]; ok {
			return r
		}
	}
	return a.fallback
}

// authenticate checks the call of method whose context is ctx, and returns
// the context to hand to the handler.
func (a *authenticator) authenticate(ctx context.Context, method string) (context.Context, error) {
	r := a.ruleFor(method)
	if r.public {
		return ctx, nil
	}
	token, err := a.credentials(ctx)
	if err != nil {
		return nil, a.refuse(ctx, method, slog.LevelDebug, codes.Unauthenticated, MessageUnauthenticated, err, "")
	}
	info, err := a.v.Validate(ctx, token)
	if err != nil {
		return nil, a.fail(ctx, method, err, token)
	}
	if !info.HasScopes(r.scopes...) {
		err := fmt.Errorf("%w: %s requires %q", tokenstore.ErrInsufficientScope, method, r.scope)
		return nil, a.refuse(ctx, method, slog.LevelDebug, codes.PermissionDenied, MessagePermissionDenied+": requires "+r.scope, err, "")
	}
	return tokenstore.NewContext(ctx, info), nil
}

var (
	errTwoValues = fmt.Errorf("%w: more than one authorization value", tokenstore.ErrInvalidRequest)
	errEmpty     = fmt.Errorf("%w: a scheme with no token", tokenstore.ErrInvalidRequest)
	errSpaces    = fmt.Errorf("%w: a token with spaces", tokenstore.ErrInvalidRequest)
	errOther     = fmt.Errorf("%w: credentials of another scheme", tokenstore.ErrNoCredentials)
)

// credentials returns the token of ctx's authorization metadata:
// "<scheme> <token>" as in an HTTP Authorization header (RFC 7235).
func (a *authenticator) credentials(ctx context.Context) (string, error) {
	vs := metadata.ValueFromIncomingContext(ctx, MetadataKey)
	switch len(vs) {
	case 0:
		return "", tokenstore.ErrNoCredentials
	case 1:
	default:
		return "", errTwoValues
	}
	// Whitespace around the value is not part of it (RFC 9110 §5.5), as
	// net/http trims it from the header before the HTTP middleware reads it.
	scheme, rest, _ := strings.Cut(strings.Trim(vs[0], " \t"), " ")
	if !a.accepts(scheme) {
		if scheme == "" && rest == "" {
			return "", tokenstore.ErrNoCredentials
		}
		return "", errOther
	}
	rest = strings.TrimLeft(rest, " ")
	switch {
	case rest == "":
		return "", errEmpty
	case strings.ContainsAny(rest, " \t"):
		return "", errSpaces
	}
	return rest, nil
}

func (a *authenticator) accepts(scheme string) bool {
	for _, s := range a.schemes {
		if strings.EqualFold(s, scheme) {
			return true
		}
	}
	return false
}

// fail answers a call whose token v refused or could not check.
func (a *authenticator) fail(ctx context.Context, method string, err error, token string) error {
	switch {
	case errors.Is(err, tokenstore.ErrExpired), errors.Is(err, tokenstore.ErrMalformed), errors.Is(err, tokenstore.ErrNotFound),
		errors.Is(err, tokenstore.ErrReused):
		return a.refuse(ctx, method, slog.LevelDebug, codes.Unauthenticated, MessageUnauthenticated, err, token)
	case errors.Is(err, tokenstore.ErrClosed):
		return a.refuse(ctx, method, slog.LevelWarn, codes.Unavailable, MessageUnavailable, err, token)
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		code := status.FromContextError(ctx.Err()).Code()
		return a.refuse(ctx, method, slog.LevelDebug, code, "the call ended before its token was checked", err, token)
	case backend.IsTimeout(err), errors.Is(err, tokenstore.ErrReadOnly):
		// A paused or overloaded store, or one that refused a write the
		// check needs (a successor's first use, which must end its
		// predecessor's grace, on a Redis replica): the token is not
		// answered valid, and clients retry Unavailable (as the HTTP
		// middleware's 503).
		return a.refuse(ctx, method, slog.LevelWarn, codes.Unavailable, MessageUnavailable, err, token)
	default:
		return a.refuse(ctx, method, slog.LevelError, codes.Internal, MessageInternal, err, token)
	}
}

// refuse logs err and returns the error of a refused call.
func (a *authenticator) refuse(ctx context.Context, method string, level slog.Level, code codes.Code, msg string, err error, token string) error {
	text := err.Error()
	if token != "" {
		text = strings.ReplaceAll(text, token, "[token]")
	}
	if a.logger.Enabled(ctx, level) {
		attrs := []slog.Attr{slog.String("code", code.String()), slog.String("method", method)}
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			attrs = append(attrs, slog.String("peer", p.Addr.String()))
		}
		attrs = append(attrs, slog.String("err", text))
		a.logger.LogAttrs(ctx, level, "grpcauth: call refused", attrs...)
	}
	return &refusal{status: status.New(code, msg), text: text, err: err}
}

// refusal is the error a refused call returns. gRPC sends the client its
// status, with a fixed message; the server sees the reason in Error and,
// through Unwrap, with errors.Is.
type refusal struct {
	status *status.Status
	text   string // err's text without the token
	err    error
}

func (e *refusal) Error() string {
	return "grpcauth: " + e.status.Code().String() + ": " + strings.TrimPrefix(e.text, "tokenstore: ")
}

// GRPCStatus is what gRPC sends the client (see status.FromError).
func (e *refusal) GRPCStatus() *status.Status { return e.status }

func (e *refusal) Unwrap() error { return e.err }
