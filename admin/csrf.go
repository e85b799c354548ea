package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
)

// The page's CSRF defence, beside net/http.CrossOriginProtection: a
// signed double-submit token (OWASP CSRF Prevention Cheat Sheet). A
// random cookie is set on the first page; each form carries
// HMAC(key, cookie ‖ session cookie) in a hidden field. A cross-origin
// attacker can neither read the cookie nor compute the HMAC, and a cookie
// planted from a sibling subdomain does not match the victim's session.
// CrossOriginProtection alone refuses every cross-origin POST from a
// browser that sends Sec-Fetch-Site or Origin (all current ones); the
// token covers older browsers and proxies that strip both headers.

const (
	csrfCookie    = "tokenstore_admin_csrf"
	csrfField     = "csrf_token"
	sessionCookie = "tokenstore_admin"
)

var errCSRF = errors.New("admin: the form's CSRF token is missing or does not match: reload the page and try again")

type csrf struct {
	key    []byte
	path   string
	secure bool
}

// token returns the form token for r, setting the cookie it is bound to
// when r has none.
func (c csrf) token(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 43 {
		v = ck.Value
	} else {
		v = rand.Text() + rand.Text()[:17] // 43 base32 characters: 215 random bits
		http.SetCookie(w, &http.Cookie{
			Name: csrfCookie, Value: v, Path: c.path,
			HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteStrictMode,
		})
		// A session set in this very response is not in r yet: bind to
		// what r carries, and the next page renders a fresh token.
	}
	return c.sign(v, sessionOf(r))
}

// verify checks r's form token against its cookie.
func (c csrf) verify(r *http.Request) error {
	ck, err := r.Cookie(csrfCookie)
	if err != nil || len(ck.Value) != 43 {
		return errCSRF
	}
	got := r.PostFormValue(csrfField)
	want := c.sign(ck.Value, sessionOf(r))
	if !hmac.Equal([]byte(got), []byte(want)) {
		return errCSRF
	}
	return nil
}

func (c csrf) sign(cookie, session string) string {
	s := sha256.Sum256([]byte(session))
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("tokenstore admin csrf\x00"))
	m.Write([]byte(cookie))
	m.Write(s[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sessionOf is the page's login cookie, "" when there is none.
func sessionOf(r *http.Request) string {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		return ck.Value
	}
	return ""
}

// notice signs the "Revoked N tokens." a change redirects to, for that
// subject, count and session: a link anyone can craft must not tell an
// operator that a leaked token is gone when it is not.
func (c csrf) notice(subject string, revoked int, session string) string {
	s := sha256.Sum256([]byte(session))
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("tokenstore admin notice\x00"))
	m.Write([]byte(strconv.Itoa(revoked) + "\x00" + subject + "\x00"))
	m.Write(s[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
