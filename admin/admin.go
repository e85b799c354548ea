// Package admin is an HTTP handler to operate a running application's
// tokens: a JSON API, RFC 7662 introspection, RFC 7009 revocation and a
// server-rendered page, on any [tokenstore.Store].
//
// # Basics
//
// The application mounts the handler under a path of its choosing, beside
// its own routes, so that a leaked token is revoked without stopping it
// (bbolt gives the file to one process: the tokenstore command cannot open
// it while the application runs):
//
//	h, err := admin.New(db, &admin.Options{Prefix: "/admin"})
//	...
//	mux.Handle("/admin/", h)
//
// Under the prefix:
//
//	GET    /api/subjects/{subject}/tokens   a subject's live tokens
//	DELETE /api/subjects/{subject}/tokens   revoke them all
//	GET    /api/tokens/{id}                 one token by ID
//	DELETE /api/tokens/{id}                 revoke it
//	DELETE /api/families/{id}/tokens        revoke every token of a family
//	POST   /api/tokens                      issue a token (returned once)
//	POST   /api/tokens/inspect              a token's details, from the token
//	POST   /api/tokens/revoke               revoke a token, from the token
//	GET    /api/stats                       counts and counters
//	GET    /api/expiring?within=24h         live tokens expiring within a duration
//	POST   /introspect                      RFC 7662
//	POST   /revoke                          RFC 7009
//	GET    /                                the page (find, inspect, revoke)
//
// docs/admin.md has every request and response.
//
// # Security
//
// Every request but the page's stylesheet gets an authorization decision
// before it reaches the store, and the default refuses: without
// Options.Authorize, only a token of this same store carrying the scope
// [DefaultScope] is accepted ([TokenAuthorizer]), sent as a Bearer token or,
// on the page only, through a login form that keeps it in an HttpOnly,
// SameSite=Strict cookie.
//
// State-changing requests from browsers are refused when they come from
// another origin (net/http.CrossOriginProtection, from the Fetch metadata
// headers Sec-Fetch-Site and Origin), and the page's forms also carry a
// signed double-submit token (OWASP's CSRF cheat sheet), for browsers that
// send neither header. The JSON API takes only application/json bodies,
// which a cross-origin form cannot send.
//
// No response, page or log line holds a token, except the one response to
// an issue request. Every response carries Cache-Control: no-store, a
// Content-Security-Policy that allows nothing but the page's own stylesheet
// and forms (no script at all), frame-ancestors 'none' and X-Frame-Options:
// DENY.
package admin

import (
	"cmp"
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/tokenshape"
)

// DefaultScope is the scope a token needs to use the handler when
// Options.Authorize is nil.
const DefaultScope = "tokenstore:admin"

// Options configure [New]. A nil *Options means every default.
type Options struct {
	// Prefix is the path the handler is mounted under, without a trailing
	// slash: "/admin" serves "/admin/", "/admin/api/stats", ... Requests
	// outside it get 404. Default "/admin".
	Prefix string

	// Authorize decides whether a request may use the handler; see
	// [Authorizer]. Nil: a [TokenAuthorizer] on the same store with
	// [DefaultScope], reading the Authorization header and the page's
	// login cookie; only then does the page have a login form.
	Authorize Authorizer

	// Logger receives a line per change (issue, revoke) naming the actor
	// and the token IDs, and server failures. Never a token. Nil:
	// [slog.Default].
	Logger *slog.Logger

	// Now is the clock that decides which tokens count as expired in
	// listings. Nil: time.Now.
	Now func() time.Time

	// CSRFKey signs the page's CSRF tokens. Instances behind one load
	// balancer need the same key, at least 32 bytes. Nil: a random key,
	// so that a form rendered before a restart is refused after it.
	CSRFKey []byte

	// InsecureCookies drops the Secure attribute from the handler's
	// cookies, for development over plain HTTP. Browsers do not send a
	// Secure cookie over http:// except to localhost.
	InsecureCookies bool
}

// Handler serves the admin API and page. Make one with [New]. It is safe
// for concurrent use.
type Handler struct {
	store     tokenstore.Store
	walk      Walker // nil when the store cannot walk its tokens
	prefix    string
	authorize Authorizer       // the page's routes
	apiAuth   Authorizer       // the API, RFC 7662 and RFC 7009 routes
	login     *TokenAuthorizer // the default authorizer, for the login form; nil with Options.Authorize
	log       *slog.Logger
	now       func() time.Time
	csrf      csrf
	secure    bool
	cop       *http.CrossOriginProtection
	api       *http.ServeMux
	static    http.Handler
	pages     *template.Template
}

// Walker is implemented by stores that can visit every token:
// *tokenstore.DB and *redisstore.Store. Stats' live and expired counts and
// the expiring listing need it; on other stores they answer 501.
type Walker interface {
	ForEach(ctx context.Context, fn func(tokenstore.Info) error) error
}

//go:embed static templates
var assets embed.FS

// New returns the admin handler on store. opts may be nil. It fails on a
// nil store, a Prefix that is not a clean path ("/admin", "/ops/tokens":
// starting with "/", no empty, "." or ".." segment, no space, brace, "%",
// "?" or "#"), or a CSRFKey shorter than 32 bytes.
func New(store tokenstore.Store, opts *Options) (*Handler, error) {
	if store == nil {
		return nil, errors.New("admin: nil store")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	h := &Handler{
		store:     store,
		prefix:    strings.TrimSuffix(cmp.Or(o.Prefix, "/admin"), "/"),
		authorize: o.Authorize,
		log:       cmp.Or(o.Logger, slog.Default()),
		now:       o.Now,
		secure:    !o.InsecureCookies,
		cop:       http.NewCrossOriginProtection(),
	}
	if err := checkPrefix(h.prefix); err != nil {
		return nil, fmt.Errorf("admin: Prefix %q: %w", o.Prefix, err)
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.walk, _ = store.(Walker)
	h.apiAuth = h.authorize
	if h.authorize == nil {
		h.login = &TokenAuthorizer{Store: store, Scope: DefaultScope, Cookie: sessionCookie}
		h.authorize = h.login.Authorize
		// The login cookie is for the page, whose forms carry a CSRF
		// token. The machine routes carry none, and RFC 7009's takes a
		// plain form's POST: there the cookie would be a credential a
		// cross-site form could borrow. They take the header only.
		h.apiAuth = (&TokenAuthorizer{Store: store, Scope: DefaultScope}).Authorize
	}
	key := o.CSRFKey
	if key == nil {
		key = make([]byte, 32)
		rand.Read(key)
	} else if len(key) < 32 {
		return nil, fmt.Errorf("admin: CSRFKey has %d bytes, want at least 32", len(key))
	}
	h.csrf = csrf{key: key, path: h.prefix + "/", secure: h.secure}
	h.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.refuse(w, r, http.StatusForbidden, "cross_origin", "cross-origin request refused")
	}))

	h.api = http.NewServeMux()
	h.routes()
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	h.static = http.StripPrefix(h.prefix+"/static/", http.FileServerFS(static))
	h.pages, err = template.New("").Funcs(templateFuncs).ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return h, nil
}

// checkPrefix refuses a prefix that is not a clean path of plain
// segments: the routes are ServeMux patterns built on it (a space or a
// brace would make them another pattern, or panic), and requests are
// matched against it literally after the mux has cleaned their paths.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasPrefix(prefix, "/") {
		return errors.New("does not start with /")
	}
	for seg := range strings.SplitSeq(prefix[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return errors.New(`want a clean path such as "/admin": no empty, "." or ".." segment`)
		}
		for _, c := range seg {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("-._~!$&'()*+,;=:@", c)) {
				return fmt.Errorf("%q is not allowed: use letters, digits and -._~!$&'()*+,;=:@ between slashes", c)
			}
		}
	}
	return nil
}

// contentSecurityPolicy allows the page its own stylesheet and forms, and
// nothing else: no script, no frame, no other origin.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP answers r: security headers on every response, then the
// cross-origin check, the authorization decision, and the route.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")

	path, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	switch {
	case !ok || path != "" && path[0] != '/':
		h.refuse(w, r, http.StatusNotFound, "unknown_route", "no such admin route")
		return
	case path == "":
		http.Redirect(w, r, h.prefix+"/", http.StatusMovedPermanently)
		return
	case strings.HasPrefix(path, "/static/"):
		// The stylesheet: public, and never near the store.
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.methodNotAllowed(w, r, http.MethodGet, http.MethodHead)
			return
		}
		hd.Set("Cache-Control", "no-cache")
		h.static.ServeHTTP(w, r)
		return
	}
	if err := h.cop.Check(r); err != nil {
		h.refuse(w, r, http.StatusForbidden, "cross_origin", "cross-origin request refused")
		return
	}
	if !isAPI(path) {
		h.servePage(w, r, path)
		return
	}
	actor, err := h.apiAuth(r)
	if err != nil {
		h.authError(w, r, err)
		return
	}
	h.api.ServeHTTP(w, r.WithContext(withActor(r.Context(), actor)))
}

// isAPI tells the machine routes (JSON errors) from the page's.
func isAPI(path string) bool {
	return strings.HasPrefix(path, "/api/") || isOAuth(path)
}

// isOAuth tells the RFC 7662 and RFC 7009 routes.
func isOAuth(path string) bool {
	return path == "/introspect" || path == "/revoke"
}

type actorKey struct{}

func withActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// actorOf is who the authorizer said made the request, for log lines.
func actorOf(r *http.Request) string {
	s, _ := r.Context().Value(actorKey{}).(string)
	return s
}

// errTokenAsSubject refuses a token given where a subject belongs (pasted
// into the wrong field): it is never echoed, looked up or stored as a
// subject, where pages, listings and logs would show it.
var errTokenAsSubject = fmt.Errorf("%w: the value given is a token, not a subject; look a token up by the token itself (the page's token form, POST /api/tokens/inspect), which keeps it out of URLs", tokenstore.ErrInvalidSubject)

// checkSubject is tokenstore.ValidateSubject, refusing tokens too.
func checkSubject(s string) error {
	if err := tokenstore.ValidateSubject(s); err != nil {
		return err
	}
	if tokenshape.IsToken(s) {
		return errTokenAsSubject
	}
	return nil
}

// parseFamilyID reads a family ID (its first token's ID) from a path or
// form value.
func parseFamilyID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 || id == uuid.Nil {
		return uuid.UUID{}, errors.New("not a family ID: want a UUID such as 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d (not the nil UUID)")
	}
	return id, nil
}

// parseID reads a token ID from a path or form value.
func parseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		// Not echoed: a token pasted where its ID belongs must not come back.
		return uuid.UUID{}, errors.New("not a token ID: want a UUID such as 0199a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d")
	}
	return id, nil
}
