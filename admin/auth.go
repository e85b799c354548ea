package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tokenstore/tokenstore"
)

var (
	// ErrUnauthenticated is what an [Authorizer] returns, wrapped or not,
	// for a request without valid credentials: the handler answers 401
	// (the page: its login form).
	ErrUnauthenticated = errors.New("admin: no valid admin credentials")

	// ErrForbidden is what an [Authorizer] returns for a request whose
	// credentials are valid but do not allow administration: 403.
	ErrForbidden = errors.New("admin: credentials lack the admin permission")
)

// An Authorizer decides whether r may use the admin handler. It returns
// the name of whoever makes the request, which the handler logs beside
// each change, or an error: [ErrUnauthenticated] (401), [ErrForbidden]
// (403), anything else a failure (503 for tokenstore.ErrClosed, else
// 500; logged, never sent). It must not read r's body.
//
// The same Authorizer decides the page's requests and the machine
// routes' (JSON API, /introspect, /revoke). Only the page's forms carry a
// CSRF token; an Authorizer that accepts a cookie on the machine routes
// leaves them to net/http.CrossOriginProtection alone, which refuses
// cross-origin requests from every current browser but not from one that
// sends neither Sec-Fetch-Site nor Origin (RFC 7009's /revoke takes a
// plain form). Prefer the Authorization header there when r's path is
// under the prefix's /api/, /introspect or /revoke.
type Authorizer func(r *http.Request) (actor string, err error)

// TokenAuthorizer accepts requests that carry a token of Store whose
// "scope" metadata (space-separated, RFC 6749 §3.3) holds Scope. It reads
// the token from the Authorization header (Bearer, RFC 6750) and, when
// Cookie is set and there is no such header, from that cookie. Each
// accepted request counts as a use of the token (Validate).
type TokenAuthorizer struct {
	Store  tokenstore.Store
	Scope  string // e.g. DefaultScope
	Cookie string // "" reads the header only
}

// Authorize is an [Authorizer]: the actor is "subject (token ID)".
func (a *TokenAuthorizer) Authorize(r *http.Request) (string, error) {
	token, err := a.token(r)
	if err != nil {
		return "", err
	}
	return a.check(r, token)
}

// check validates token and its scope.
func (a *TokenAuthorizer) check(r *http.Request, token string) (string, error) {
	info, err := a.Store.Validate(r.Context(), token)
	switch {
	case errors.Is(err, tokenstore.ErrMalformed), errors.Is(err, tokenstore.ErrNotFound):
		return "", invalidToken("the admin token is not one of this store's, or was revoked")
	case errors.Is(err, tokenstore.ErrExpired):
		return "", invalidToken("the admin token has expired")
	case errors.Is(err, tokenstore.ErrReused):
		// A refused credential like any other (RFC 6750 §3.1), not the
		// API's 410 "reused", which is about the token a request names.
		return "", errReusedCredential
	case err != nil:
		return "", err
	}
	actor := fmt.Sprintf("%s (token %s)", info.Subject, info.ID)
	if !info.HasScopes(a.Scope) {
		return actor, fmt.Errorf("%w: token %s lacks the scope %q", ErrForbidden, info.ID, a.Scope)
	}
	return actor, nil
}

// invalidToken refuses a credential that was presented but is not valid:
// RFC 6750 §3.1's invalid_token, as opposed to no credential at all. It
// is an ErrUnauthenticated.
type invalidToken string

func (e invalidToken) Error() string { return ErrUnauthenticated.Error() + ": " + string(e) }
func (e invalidToken) Unwrap() error { return ErrUnauthenticated }

// errReusedCredential refuses an admin token rotated away and presented
// again after its grace: the store has revoked its family.
const errReusedCredential = invalidToken("the admin token was rotated away and presented again after its grace: every token of its family is now revoked")

// token reads the credentials: a Bearer header, else the cookie.
func (a *TokenAuthorizer) token(r *http.Request) (string, error) {
	hs := r.Header.Values("Authorization")
	switch {
	case len(hs) > 1:
		return "", fmt.Errorf("%w: more than one Authorization header", ErrUnauthenticated)
	case len(hs) == 1:
		scheme, token, ok := strings.Cut(hs[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
			return "", fmt.Errorf("%w: want Authorization: Bearer <token>", ErrUnauthenticated)
		}
		return token, nil
	}
	if a.Cookie != "" {
		if c, err := r.Cookie(a.Cookie); err == nil && c.Value != "" {
			return c.Value, nil
		}
	}
	return "", fmt.Errorf("%w: the request carries no admin token", ErrUnauthenticated)
}
