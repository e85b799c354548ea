package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokenstore/tokenstore/internal/backend"
)

// Validator checks a token and returns its Info. [*DB] satisfies it, and
// so does every [Store]. The errors it returns should wrap [ErrMalformed],
// [ErrNotFound], [ErrExpired], [ErrReused] or [ErrClosed] as *DB's do; any
// other error is a server failure. Its errors must not contain the token
// (the middleware redacts it from what it logs all the same).
type Validator interface {
	Validate(ctx context.Context, token string) (Info, error)
}

// Errors the middleware passes to an error handler set with
// [WithErrorHandler], besides those of the [Validator].
var (
	// ErrNoCredentials is passed when a request carries no token in any
	// source the middleware reads (or only credentials of another scheme).
	ErrNoCredentials = errors.New("tokenstore: request carries no token")

	// ErrInvalidRequest is passed, wrapped with the reason, when the
	// credentials are malformed as a request: a scheme with no token, a
	// token with spaces, two Authorization headers, or a token sent by two
	// methods.
	ErrInvalidRequest = errors.New("tokenstore: invalid authentication request")
)

// DefaultRealm is the realm of the WWW-Authenticate challenge unless
// [WithRealm] sets another.
const DefaultRealm = "api"

// DefaultExpiryHeader is the response header that carries an authenticated
// token's expiry unless [WithExpiryHeader] sets another.
const DefaultExpiryHeader = "Token-Expires"

// MiddlewareOption configures [Middleware].
type MiddlewareOption func(*middlewareConfig)

type middlewareConfig struct {
	realm        string
	optional     bool
	cookie       string
	query        string
	schemes      []string
	onError      func(w http.ResponseWriter, r *http.Request, status int, code, description string, err error)
	expiryHeader string
	logger       *slog.Logger
}

// WithRealm sets the realm of the WWW-Authenticate challenge. Default
// [DefaultRealm]; "" leaves the realm out. Quotes and backslashes are
// escaped and control characters replaced by spaces.
func WithRealm(realm string) MiddlewareOption {
	return func(c *middlewareConfig) { c.realm = realm }
}

// WithOptional makes authentication optional: a request with no token (or
// with credentials of another scheme, such as Basic, for another layer to
// check) reaches the next handler with no Info in its context. A request
// whose token is bad is still refused, as without this option.
func WithOptional() MiddlewareOption {
	return func(c *middlewareConfig) { c.optional = true }
}

// WithCookie also reads the token from the cookie name when the request has
// no token in an Authorization header of an accepted scheme (nor in the
// query parameter of [WithQueryParam]). Off by default. An empty
// cookie counts as no token. Cookies are sent by browsers on their own: pair
// this with the SameSite attribute or CSRF protection.
func WithCookie(name string) MiddlewareOption {
	return func(c *middlewareConfig) { c.cookie = name }
}

// WithQueryParam also reads the token from the URL query parameter name
// (RFC 6750 §2.3 calls it "access_token"). Off by default: URLs end up in
// access logs, browser history and Referer headers, and RFC 6750 advises
// against it. A request that sends the parameter twice, or sends it and an
// Authorization header of an accepted scheme, is refused with
// invalid_request. The middleware never logs the query string.
func WithQueryParam(name string) MiddlewareOption {
	return func(c *middlewareConfig) { c.query = name }
}

// WithSchemes sets the authentication schemes accepted in the
// Authorization header, matched case-insensitively (RFC 7235). Default
// "Bearer" and "Token" (Django REST Framework's). The first is the one
// named in WWW-Authenticate challenges. [Middleware] panics when the list
// is empty or a name is not an HTTP token.
func WithSchemes(schemes ...string) MiddlewareOption {
	return func(c *middlewareConfig) { c.schemes = schemes }
}

// WithErrorHandler replaces how refusals and failures are written, by the
// middleware and by [RequireScopes] after it. fn is called with the status
// (400, 401, 403, 500 or 503), the RFC 6750 error code ("" when the
// request had no credentials, "invalid_request", "invalid_token",
// "insufficient_scope", or "server_error" and "temporarily_unavailable"
// for 500 and 503), a description safe to show to clients, and the cause,
// for [errors.Is]: [ErrNoCredentials], [ErrInvalidRequest],
// [ErrInsufficientScope] or the [Validator]'s error. For 400, 401 and 403
// the WWW-Authenticate header is already set; fn writes the status and the
// body. The default writes
// {"error":code,"error_description":description} as JSON, with the code
// "unauthorized" when it is "", and the headers Content-Type:
// application/json, Cache-Control: no-store and X-Content-Type-Options:
// nosniff. A nil fn keeps the default.
func WithErrorHandler(fn func(w http.ResponseWriter, r *http.Request, status int, code, description string, err error)) MiddlewareOption {
	return func(c *middlewareConfig) { c.onError = fn }
}

// WithExpiryHeader names the response header that tells the client when
// its token expires, as an HTTP date (RFC 9110 §5.6.7, second precision,
// rounded down). It is set on every authenticated response before the next
// handler runs (unless the Info has no ExpiresAt): for a sliding token it
// is the deadline after this request moved it. Default [DefaultExpiryHeader]; "" sets no header. Browsers
// show it to scripts of other origins only when it is listed in
// Access-Control-Expose-Headers.
func WithExpiryHeader(name string) MiddlewareOption {
	return func(c *middlewareConfig) { c.expiryHeader = name }
}

// WithLogger sets where the middleware reports server failures (at level
// Error, 503s at Warn) and refused requests (at Debug), with the method,
// path and cause but never the token or the query string. Default
// [slog.Default].
func WithLogger(l *slog.Logger) MiddlewareOption {
	return func(c *middlewareConfig) { c.logger = l }
}

// infoKey is the context key of the authenticated token's Info.
type infoKey struct{}

// FromContext returns the Info of the token that authenticated the request
// whose context is ctx. It is false outside [Middleware] (or a context from
// [NewContext]), and for an anonymous request let through by
// [WithOptional]. The Info's Metadata map is shared by every caller of the
// request: do not modify it.
func FromContext(ctx context.Context) (Info, bool) {
	c, ok := ctx.Value(infoKey{}).(*authContext)
	if !ok {
		return Info{}, false
	}
	return c.info, c.ok
}

// NewContext returns a copy of ctx that carries info, for [FromContext]
// and [RequireScopes] to find: what [Middleware] does for HTTP, for
// middleware of other protocols (the grpcauth package) and for tests of
// handlers. Like [FromContext] it follows net/http's and grpc/metadata's
// pattern of an unexported key with exported accessors.
//
// Inside a [Middleware] (a handler that replaces the Info, to narrow its
// scopes say), the new context keeps that Middleware's realm, scheme,
// logger and error handler for [RequireScopes]'s refusals.
func NewContext(ctx context.Context, info Info) context.Context {
	return &authContext{Context: ctx, info: info, ok: true}
}

// authContext is a request's context with its token's Info: one allocation
// where [context.WithValue] and a heap *Info would take two. It answers
// every other key, and Done, Err and Deadline, from the context it wraps.
type authContext struct {
	context.Context
	info Info
	ok   bool           // false: an anonymous request let through by WithOptional
	auth *authenticator // the Middleware that saw the request; nil from NewContext
}

// middleware returns the Middleware that saw the request: c's, or, for a
// context from NewContext, that of the nearest context it wraps that has
// one. nil when none did.
func (c *authContext) middleware() *authenticator {
	for c != nil && c.auth == nil {
		c, _ = c.Context.Value(infoKey{}).(*authContext)
	}
	if c == nil {
		return nil
	}
	return c.auth
}

// Value returns c itself for infoKey{}.
func (c *authContext) Value(key any) any {
	if key == (infoKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// Middleware returns a net/http middleware that authenticates each request
// with a token checked by v, per RFC 6750 §3:
//
//   - no token (or only credentials of another scheme): 401 with
//     WWW-Authenticate: Bearer realm="api", and no error code;
//   - a valid token: the next handler runs, and [FromContext] gives the
//     token's Info; v.Validate has counted the use, so a sliding token has
//     slid, and the response carries its expiry (see [WithExpiryHeader]);
//   - a malformed, unknown, revoked or expired token: 401 with
//     error="invalid_token" and an error_description ("the token has
//     expired" for an expired one);
//   - a token rotated away and presented after its grace ([ErrReused]):
//     401 with error="invalid_token" and an error_description that tells
//     the client to authenticate again, since the store has revoked the
//     token's whole family (RFC 9700 §4.14.2);
//   - a scheme with no token, a token with spaces, or two Authorization
//     headers: 400 with error="invalid_request";
//   - v fails: 503 (error "temporarily_unavailable", which clients retry)
//     when the store is closed ([ErrClosed]), did not answer in time (its
//     own deadline, a network timeout), could not write what the check
//     needs ([ErrReadOnly]: a Redis replica refusing the write that ends a
//     rotated token's grace), or the request's context is done; 500
//     otherwise; the cause is logged, never sent.
//
// The token is read from the Authorization header ("Bearer <token>" or
// "Token <token>", see [WithSchemes]), and also from a cookie or a query
// parameter when [WithCookie] or [WithQueryParam] ask for it. Refusals are
// written as small JSON bodies with Content-Type application/json and
// Cache-Control: no-store, unless [WithErrorHandler] writes them. The token
// never appears in a response or a log line. [RequireScopes] after it
// refuses tokens that lack a scope with a 403 (RFC 6750 §3.1).
//
// Middleware panics when v is nil or the options are invalid. The handler
// it returns is safe for concurrent use.
func Middleware(v Validator, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	if v == nil {
		panic("tokenstore: Middleware: nil Validator")
	}
	c := middlewareConfig{
		realm:        DefaultRealm,
		schemes:      []string{"Bearer", "Token"},
		expiryHeader: DefaultExpiryHeader,
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if len(c.schemes) == 0 {
		panic("tokenstore: Middleware: WithSchemes with no scheme")
	}
	for _, s := range c.schemes {
		if !isHTTPToken(s) {
			panic(fmt.Sprintf("tokenstore: Middleware: scheme %q is not an HTTP token", s))
		}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.onError == nil {
		c.onError = writeJSONError
	}
	if c.expiryHeader != "" {
		c.expiryHeader = http.CanonicalHeaderKey(c.expiryHeader)
	}
	challenge := c.schemes[0]
	if c.realm != "" {
		challenge += ` realm="` + quoteRealm(c.realm) + `"`
	}
	schemes := append([]string(nil), c.schemes...)
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("tokenstore: Middleware: nil next handler")
		}
		return &authenticator{v: v, next: next, cfg: c, challenge: challenge, schemes: schemes}
	}
}

// authenticator is the handler Middleware wraps around next.
type authenticator struct {
	v         Validator
	next      http.Handler
	cfg       middlewareConfig
	challenge string   // `Bearer realm="api"`
	schemes   []string // accepted schemes

	// lastExpiry is the latest expiry header value written. Sliding
	// tokens of one policy used in the same second share their deadline's
	// second, so most requests reuse it instead of formatting a date.
	lastExpiry atomic.Pointer[expiryValue]
}

type expiryValue struct {
	unix  int64  // seconds
	value string // as an HTTP date
}

// expiry returns t as an HTTP date, from lastExpiry when it is t's second.
func (a *authenticator) expiry(t time.Time) string {
	sec := t.Unix()
	last := a.lastExpiry.Load()
	if last != nil && last.unix == sec {
		return last.value
	}
	var buf [len(http.TimeFormat)]byte
	v := string(appendHTTPDate(buf[:0], t))
	if last == nil || sec > last.unix { // deadlines move forward: keep the latest
		a.lastExpiry.CompareAndSwap(last, &expiryValue{sec, v})
	}
	return v
}

// refusal describes why a request is refused before its token is checked.
type refusal struct {
	status      int
	code        string
	description string
	err         error
}

var (
	refuseNone       = refusal{http.StatusUnauthorized, "", "authentication required", ErrNoCredentials}
	refuseEmpty      = badRequest("the authorization header has no token", "a scheme with no token")
	refuseSpaces     = badRequest("the authorization header must hold one token after the scheme", "a token with spaces")
	refuseTwoHeaders = badRequest("more than one authorization header", "more than one Authorization header")
	refuseTwoMethods = badRequest("the token was sent by more than one method", "a token in the header and the query")
	refuseQueryTwice = badRequest("the token query parameter is repeated", "a repeated query parameter")
	refuseEmptyQuery = badRequest("the token query parameter is empty", "an empty query parameter")
)

const descriptionInvalid = "the token is not valid"

// descriptionReused is the error_description of a reused token: its
// family is revoked, so no token the client holds from it works, and
// refreshing again cannot help.
const descriptionReused = "the token was replaced and used again; every token of its session is revoked: authenticate again"

func badRequest(description, reason string) refusal {
	return refusal{http.StatusBadRequest, "invalid_request", description, fmt.Errorf("%w: %s", ErrInvalidRequest, reason)}
}

// ServeHTTP authenticates r and calls the next handler or refuses it.
func (a *authenticator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ref := a.credentials(r)
	if ref != nil {
		if ref.err == ErrNoCredentials && a.cfg.optional {
			// Marked, so that RequireScopes after it refuses the request
			// as this middleware would.
			a.next.ServeHTTP(w, r.WithContext(&authContext{Context: r.Context(), auth: a}))
			return
		}
		a.refuse(w, r, ref.status, ref.code, ref.description, ref.err, "")
		return
	}
	info, err := a.v.Validate(r.Context(), token)
	if err != nil {
		a.fail(w, r, err, token)
		return
	}
	if a.cfg.expiryHeader != "" && !info.ExpiresAt.IsZero() {
		w.Header()[a.cfg.expiryHeader] = []string{a.expiry(info.ExpiresAt)}
	}
	a.next.ServeHTTP(w, r.WithContext(&authContext{Context: r.Context(), info: info, ok: true, auth: a}))
}

// credentials finds the token in r. It returns a refusal when there is none
// (&refuseNone) or the request is malformed.
func (a *authenticator) credentials(r *http.Request) (string, *refusal) {
	token, found, ref := "", false, (*refusal)(nil)
	switch h := r.Header["Authorization"]; len(h) {
	case 0:
	case 1:
		token, found, ref = a.fromHeader(h[0])
		if ref != nil {
			return "", ref
		}
	default:
		return "", &refuseTwoHeaders
	}
	if a.cfg.query != "" && r.URL.RawQuery != "" {
		if vs := r.URL.Query()[a.cfg.query]; len(vs) > 0 {
			switch {
			case found:
				return "", &refuseTwoMethods
			case len(vs) > 1:
				return "", &refuseQueryTwice
			case vs[0] == "":
				return "", &refuseEmptyQuery
			case hasSpace(vs[0]):
				return "", &refuseSpaces
			}
			token, found = vs[0], true
		}
	}
	if !found && a.cfg.cookie != "" {
		if c, err := r.Cookie(a.cfg.cookie); err == nil && c.Value != "" {
			token, found = c.Value, true
		}
	}
	if !found {
		return "", &refuseNone
	}
	return token, nil
}

// fromHeader parses one Authorization header value: "<scheme> <token>"
// (RFC 7235: credentials = auth-scheme [ 1*SP token68 ]). found is false
// for an empty header or another scheme.
func (a *authenticator) fromHeader(v string) (token string, found bool, ref *refusal) {
	scheme, rest, _ := strings.Cut(v, " ")
	if !a.accepts(scheme) {
		return "", false, nil
	}
	rest = strings.TrimLeft(rest, " ")
	switch {
	case rest == "":
		return "", false, &refuseEmpty
	case hasSpace(rest):
		return "", false, &refuseSpaces
	}
	return rest, true, nil
}

func (a *authenticator) accepts(scheme string) bool {
	for _, s := range a.schemes {
		if strings.EqualFold(s, scheme) {
			return true
		}
	}
	return false
}

// fail answers a request whose token v refused or could not check.
func (a *authenticator) fail(w http.ResponseWriter, r *http.Request, err error, token string) {
	switch {
	case errors.Is(err, ErrExpired):
		a.refuse(w, r, http.StatusUnauthorized, "invalid_token", "the token has expired", err, token)
	case errors.Is(err, ErrMalformed):
		a.refuse(w, r, http.StatusUnauthorized, "invalid_token", "the token is malformed", err, token)
	case errors.Is(err, ErrNotFound):
		a.refuse(w, r, http.StatusUnauthorized, "invalid_token", descriptionInvalid, err, token)
	case errors.Is(err, ErrReused):
		a.refuse(w, r, http.StatusUnauthorized, "invalid_token", descriptionReused, err, token)
	case errors.Is(err, ErrClosed):
		a.log(r, slog.LevelWarn, "tokenstore: store is closed", err, token, http.StatusServiceUnavailable)
		a.cfg.onError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the service is temporarily unavailable", err)
	case r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		a.log(r, slog.LevelDebug, "tokenstore: request ended before its token was checked", err, token, http.StatusServiceUnavailable)
		a.cfg.onError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the service is temporarily unavailable", err)
	case errors.Is(err, ErrReadOnly):
		// A write the check needs was refused (a successor's first use,
		// which must end its predecessor's grace, on a Redis replica):
		// the token is not answered valid, and a retry that reaches a
		// writable store may succeed, so 503, as for a timeout.
		a.log(r, slog.LevelWarn, "tokenstore: the store could not write what the check needs", err, token, http.StatusServiceUnavailable)
		a.cfg.onError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the service is temporarily unavailable", err)
	case backend.IsTimeout(err):
		// The store did not answer in time (a paused or overloaded Redis):
		// a retry may succeed, so 503, as for a closed store.
		a.log(r, slog.LevelWarn, "tokenstore: the store did not answer in time", err, token, http.StatusServiceUnavailable)
		a.cfg.onError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the service is temporarily unavailable", err)
	default:
		a.log(r, slog.LevelError, "tokenstore: cannot check token", err, token, http.StatusInternalServerError)
		a.cfg.onError(w, r, http.StatusInternalServerError, "server_error", "internal server error", err)
	}
}

// refuse sets the challenge and writes a 400 or 401.
func (a *authenticator) refuse(w http.ResponseWriter, r *http.Request, status int, code, description string, err error, token string) {
	w.Header().Set("WWW-Authenticate", a.challengeWith(code, description, ""))
	a.log(r, slog.LevelDebug, "tokenstore: request refused", err, token, status)
	a.cfg.onError(w, r, status, code, description, err)
}

// challengeWith returns the WWW-Authenticate challenge with the error
// attributes of RFC 6750 §3, when code is not "", and the scope attribute,
// when scope is not "". description and scope need no escaping: they are
// the package's constants and RFC 6749 scope-tokens, which exclude '"'
// and '\'.
func (a *authenticator) challengeWith(code, description, scope string) string {
	if code == "" {
		return a.challenge
	}
	sep := ", "
	if a.cfg.realm == "" {
		sep = " "
	}
	c := a.challenge + sep + `error="` + code + `", error_description="` + description + `"`
	if scope != "" {
		c += `, scope="` + scope + `"`
	}
	return c
}

// descriptionInsufficientScope is the error_description of a 403.
const descriptionInsufficientScope = "the token lacks a required scope"

// RequireScopes returns a net/http middleware, to be placed after
// [Middleware], that lets a request through only when its token has every
// one of scopes (see [Info.HasScopes]), per RFC 6750 §3.1:
//
//   - the token has them: the next handler runs;
//   - it lacks one: 403 with WWW-Authenticate: Bearer realm="api",
//     error="insufficient_scope", error_description="…", scope="<scopes>",
//     written as the Middleware writes its refusals (its realm, scheme and
//     [WithErrorHandler], the cause wrapping [ErrInsufficientScope] and
//     naming the scopes missing, logged at Debug);
//   - no authenticated token reached it (an anonymous request let through
//     by [WithOptional]): 401 as the Middleware gives it, never a 403.
//
// A request that reaches it without passing a Middleware (or carrying a
// context from [NewContext]) is a mistake in the handler chain: it is
// refused with a 401 as a Middleware with default options would, and
// logged at Error through [slog.Default].
//
// RequireScopes panics when a scope is not an RFC 6749 scope-token
// ([ValidateScopes]) or next is nil. With no scopes it only requires an
// authenticated token. The check does not allocate.
func RequireScopes(scopes ...string) func(http.Handler) http.Handler {
	if err := ValidateScopes(scopes...); err != nil {
		panic("tokenstore: RequireScopes: " + strings.TrimPrefix(err.Error(), "tokenstore: "))
	}
	required := slices.Clone(scopes)
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("tokenstore: RequireScopes: nil next handler")
		}
		fallback := Middleware(validatorFunc(nil))(next).(*authenticator)
		return &scopeGuard{next: next, scopes: required, scope: strings.Join(required, " "), fallback: fallback}
	}
}

// validatorFunc is a Validator that RequireScopes's fallback never calls.
type validatorFunc func(ctx context.Context, token string) (Info, error)

func (f validatorFunc) Validate(ctx context.Context, token string) (Info, error) {
	return f(ctx, token)
}

// scopeGuard is the handler RequireScopes wraps around next.
type scopeGuard struct {
	next     http.Handler
	scopes   []string
	scope    string         // scopes, space-separated, for the challenge
	fallback *authenticator // writes refusals when no Middleware came before
}

// ServeHTTP calls the next handler or refuses r.
func (g *scopeGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, _ := r.Context().Value(infoKey{}).(*authContext)
	if c != nil && c.ok && c.info.HasScopes(g.scopes...) {
		g.next.ServeHTTP(w, r)
		return
	}
	a := c.middleware()
	if a == nil {
		a = g.fallback
	}
	if c == nil {
		if l := slog.Default(); l.Enabled(r.Context(), slog.LevelError) {
			l.LogAttrs(r.Context(), slog.LevelError, "tokenstore: RequireScopes reached without Middleware before it",
				slog.String("method", r.Method), slog.String("path", r.URL.Path))
		}
	}
	if c == nil || !c.ok {
		a.refuse(w, r, refuseNone.status, refuseNone.code, refuseNone.description, refuseNone.err, "")
		return
	}
	err := fmt.Errorf("%w: lacks %s", ErrInsufficientScope, strings.Join(c.info.missingScopes(g.scopes), " "))
	w.Header().Set("WWW-Authenticate", a.challengeWith("insufficient_scope", descriptionInsufficientScope, g.scope))
	a.log(r, slog.LevelDebug, "tokenstore: request refused", err, "", http.StatusForbidden)
	a.cfg.onError(w, r, http.StatusForbidden, "insufficient_scope", descriptionInsufficientScope, err)
}

// log reports err about r, with token (if any) cut out of its text.
func (a *authenticator) log(r *http.Request, level slog.Level, msg string, err error, token string, status int) {
	ctx := r.Context()
	if !a.cfg.logger.Enabled(ctx, level) {
		return
	}
	text := err.Error()
	if token != "" {
		text = strings.ReplaceAll(text, token, "[token]")
	}
	a.cfg.logger.LogAttrs(ctx, level, msg,
		slog.Int("status", status),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("err", text))
}

// writeJSONError is the default error handler.
func writeJSONError(w http.ResponseWriter, _ *http.Request, status int, code, description string, _ error) {
	if code == "" {
		code = "unauthorized"
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// code and description are the middleware's constants: no escaping needed.
	_, _ = w.Write([]byte(`{"error":"` + code + `","error_description":"` + description + `"}` + "\n"))
}

// hasSpace reports whether s holds a space or a tab.
func hasSpace(s string) bool {
	return strings.IndexByte(s, ' ') >= 0 || strings.IndexByte(s, '\t') >= 0
}

// appendHTTPDate appends t as an HTTP date, "Mon, 02 Jan 2006 15:04:05
// GMT" ([http.TimeFormat]), rounded down to the second: what
// t.UTC().AppendFormat(dst, http.TimeFormat) does, in a third of the time.
// Years outside 0-9999 are left to AppendFormat.
func appendHTTPDate(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, http.TimeFormat)
	}
	hour, minute, sec := t.Clock()
	two := func(dst []byte, n int) []byte { return append(dst, byte('0'+n/10), byte('0'+n%10)) }
	dst = append(dst, t.Weekday().String()[:3]...)
	dst = append(dst, ", "...)
	dst = two(dst, day)
	dst = append(dst, ' ')
	dst = append(dst, month.String()[:3]...)
	dst = append(dst, ' ')
	dst = two(two(dst, year/100), year%100)
	dst = append(dst, ' ')
	dst = two(dst, hour)
	dst = append(dst, ':')
	dst = two(dst, minute)
	dst = append(dst, ':')
	dst = two(dst, sec)
	return append(dst, " GMT"...)
}

// quoteRealm makes s safe inside a quoted-string.
func quoteRealm(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c < ' ' || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// isHTTPToken reports whether s is an RFC 9110 token (a scheme name).
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
