package admin

import (
	"bytes"
	"crypto/hmac"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/tokenstore/tokenstore"
)

// The page: server-rendered, no script, every form a plain HTML form.
// GETs never change anything; each change is a POST from a confirmation
// page, carrying the CSRF token, answered with a redirect (303) so that a
// reload does not repeat it.

// pageData is what every template gets. Nothing in it ever holds a token.
type pageData struct {
	Title   string
	Prefix  string
	CSRF    string
	Login   bool   // the default authorizer: show the log-out button
	Actor   string // who is logged in
	Error   string
	Notice  string
	Subject string      // the subject searched for
	Tokens  []tokenView // its tokens
	Token   *tokenView  // the token found by ID or by token
	Confirm *confirm
}

type tokenView struct {
	ID, Family, Subject, Created, LastUsed, Expires, Policy string
	Expired                                                 bool
	InGrace                                                 bool // rotated away, valid until Expires
	Metadata                                                []metaEntry
}

type metaEntry struct{ Key, Value string }

type confirm struct {
	Action  string // the form's path under the prefix
	ID      string // revoke one token
	Family  string // revoke every token of a family
	Subject string // revoke every token of a subject (or the token's or family's subject)
	Count   int    // tokens the subject (or the family) holds now
}

var templateFuncs = template.FuncMap{"plural": plural, "visible": visible}

// visible shows s with its invisible and direction-changing characters
// (Unicode categories Cf and Cc: U+202E RIGHT-TO-LEFT OVERRIDE, U+2066
// isolates, U+200B ZERO WIDTH SPACE, ...) written as \uXXXX. Subjects
// and metadata are chosen by whoever issues tokens (often a user
// choosing a name); raw, such a character shows the operator another
// name than the stored one, or reverses the sentence around it on a
// confirmation page. The templates also isolate each such text in <bdi>,
// for right-to-left scripts. Form values keep the exact text.
func visible(s string) string {
	hidden := func(r rune) bool { return unicode.Is(unicode.Cf, r) || unicode.IsControl(r) }
	if !strings.ContainsFunc(s, hidden) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if hidden(r) {
			fmt.Fprintf(&b, `\u%04x`, r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

const timeLayout = "2006-01-02 15:04:05 UTC"

func (h *Handler) view(info tokenstore.Info, now time.Time) tokenView {
	v := tokenView{
		ID:       info.ID.String(),
		Family:   info.FamilyID.String(),
		Subject:  info.Subject,
		Created:  info.CreatedAt.UTC().Format(timeLayout),
		LastUsed: "never",
		Expires:  info.ExpiresAt.UTC().Format(timeLayout),
		Expired:  !now.Before(info.ExpiresAt),
		Policy:   info.Policy.String(),
	}
	if info.LastUsedAt.After(info.CreatedAt) {
		v.LastUsed = info.LastUsedAt.UTC().Format(timeLayout)
	}
	for _, k := range slices.Sorted(maps.Keys(info.Metadata)) {
		v.Metadata = append(v.Metadata, metaEntry{k, info.Metadata[k]})
	}
	return v
}

// servePage routes the page's paths. Login and logout come first; every
// other path gets the authorization decision, and each POST the CSRF
// check before it.
func (h *Handler) servePage(w http.ResponseWriter, r *http.Request, path string) {
	post := r.Method == http.MethodPost
	if !post && r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.methodNotAllowed(w, r, http.MethodGet, http.MethodPost)
		return
	}
	if post {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h.csrf.verify(r); err != nil {
			h.renderPage(w, r, http.StatusForbidden, "error", pageData{Title: "Refused", Error: err.Error()})
			return
		}
	}
	switch path {
	case "/login":
		h.pageLogin(w, r, post)
		return
	case "/logout":
		if !post {
			h.methodNotAllowed(w, r, http.MethodPost)
			return
		}
		http.SetCookie(w, h.cookie(sessionCookie, "", -1))
		http.Redirect(w, r, h.prefix+"/login", http.StatusSeeOther)
		return
	}
	actor, err := h.authorize(r)
	if err != nil {
		switch {
		case errors.Is(err, ErrUnauthenticated) && h.login != nil:
			h.renderPage(w, r, http.StatusUnauthorized, "login", pageData{Title: "Log in"})
		default:
			h.authError(w, r, err)
		}
		return
	}
	r = r.WithContext(withActor(r.Context(), actor))
	d := pageData{Actor: actor}
	switch {
	case path == "/" && !post:
		h.pageHome(w, r, d)
	case path == "/token" && post: // find by token, from a form: never in a URL
		h.pageFindToken(w, r, d)
	case path == "/token/revoke":
		h.pageRevokeToken(w, r, d, post)
	case path == "/subject/revoke":
		h.pageRevokeSubject(w, r, d, post)
	case path == "/family/revoke":
		h.pageRevokeFamily(w, r, d, post)
	case path == "/":
		h.methodNotAllowed(w, r, http.MethodGet)
	case path == "/token":
		h.methodNotAllowed(w, r, http.MethodPost)
	default:
		h.refuse(w, r, http.StatusNotFound, "unknown_route", "no such page")
	}
}

func (h *Handler) pageLogin(w http.ResponseWriter, r *http.Request, post bool) {
	if h.login == nil {
		h.refuse(w, r, http.StatusNotFound, "unknown_route", "this application authorizes administrators itself: there is no login form")
		return
	}
	if !post {
		h.renderPage(w, r, http.StatusOK, "login", pageData{Title: "Log in"})
		return
	}
	token := r.PostFormValue("token")
	if _, err := h.login.check(r, token); err != nil {
		d := pageData{Title: "Log in", Error: "That is not an admin token of this application (or it has expired or been revoked)."}
		status := http.StatusUnauthorized
		switch {
		case errors.Is(err, ErrForbidden):
			d.Error, status = "That token is valid but lacks the scope "+strconv.Quote(h.login.Scope)+".", http.StatusForbidden
		case errors.Is(err, errReusedCredential):
			d.Error = "That admin token was rotated away and has been presented again after its grace: every token of its family is now revoked. Log in with a new one."
		case !errors.Is(err, ErrUnauthenticated):
			h.authError(w, r, err)
			return
		}
		h.renderPage(w, r, status, "login", d)
		return
	}
	http.SetCookie(w, h.cookie(sessionCookie, token, 0))
	http.Redirect(w, r, h.prefix+"/", http.StatusSeeOther)
}

// cookie makes one of the handler's cookies: HttpOnly, SameSite=Strict,
// scoped to the prefix. maxAge < 0 deletes it.
func (h *Handler) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: h.prefix + "/", MaxAge: maxAge,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode,
	}
}

func (h *Handler) pageHome(w http.ResponseWriter, r *http.Request, d pageData) {
	q := r.URL.Query()
	now := h.now()
	if n := q.Get("revoked"); n != "" {
		k, err := strconv.Atoi(n)
		sig := h.csrf.notice(q.Get("subject"), k, sessionOf(r))
		if err == nil && k >= 0 && hmac.Equal([]byte(q.Get("sig")), []byte(sig)) {
			d.Notice = "Revoked " + plural(k, "token") + "."
		}
	}
	switch {
	case q.Has("id"):
		id, err := parseID(q.Get("id"))
		if err != nil {
			d.Error = err.Error()
			break
		}
		info, err := h.store.Get(r.Context(), id)
		if err != nil && !errors.Is(err, tokenstore.ErrExpired) {
			if !errors.Is(err, tokenstore.ErrNotFound) {
				h.storeError(w, r, err)
				return
			}
			d.Error = "No token with ID " + id.String() + " (never issued, revoked, or expired and deleted)."
			break
		}
		v := h.view(info, now)
		d.Token = &v
	case q.Has("subject"):
		d.Subject = q.Get("subject")
		if err := checkSubject(d.Subject); err != nil {
			if errors.Is(err, errTokenAsSubject) {
				d.Subject = ""
			}
			d.Error = err.Error()
			break
		}
		infos, err := h.store.List(r.Context(), d.Subject)
		damaged, err := damagedOnly(err)
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		if damaged != "" {
			d.Error = "Some records are damaged and not shown (" + damaged + "); tokenstore check names them, revoke by ID removes them."
		}
		for _, info := range infos {
			d.Tokens = append(d.Tokens, h.view(info, now))
		}
		if len(infos) == 0 && d.Error == "" {
			d.Error = "Subject " + strconv.Quote(d.Subject) + " holds no live tokens."
		}
	}
	d.Title = "Tokens"
	h.renderPage(w, r, http.StatusOK, "home", d)
}

// pageFindToken shows the token an operator pasted (a leaked one): its
// details and ID, never the token.
func (h *Handler) pageFindToken(w http.ResponseWriter, r *http.Request, d pageData) {
	d.Title = "Tokens"
	info, err := h.store.Lookup(r.Context(), r.PostFormValue("token"))
	switch {
	case errors.Is(err, tokenstore.ErrMalformed):
		d.Error = "That is not a token of this application (wrong length, prefix or checksum)."
	case errors.Is(err, tokenstore.ErrNotFound):
		d.Error = "No such token: never issued, revoked, or expired and deleted."
	case errors.Is(err, tokenstore.ErrExpired):
		d.Error = "That token has expired."
	case errors.Is(err, tokenstore.ErrReused):
		d.Error = "That token was rotated away and has been presented again after its grace: one of its holders has a stolen copy, so every token of its family is now revoked."
	case err != nil:
		h.storeError(w, r, err)
		return
	default:
		v := h.view(info, h.now())
		// A token rotated away and within its grace has no record of its
		// own any more (Get by its ID is not found): only the token itself
		// or its family can be revoked, not its ID.
		if _, err := h.store.Get(r.Context(), info.ID); errors.Is(err, tokenstore.ErrNotFound) {
			v.InGrace = true
		}
		d.Token = &v
	}
	h.renderPage(w, r, http.StatusOK, "home", d)
}

func (h *Handler) pageRevokeToken(w http.ResponseWriter, r *http.Request, d pageData, post bool) {
	src := r.URL.Query()
	if post {
		src = r.PostForm
	}
	info, ok := h.getByID(w, r, src.Get("id"))
	if !ok {
		return
	}
	if !post {
		v := h.view(info, h.now())
		d.Title, d.Token = "Revoke token?", &v
		d.Confirm = &confirm{Action: "/token/revoke", ID: v.ID}
		h.renderPage(w, r, http.StatusOK, "confirm", d)
		return
	}
	if err := h.store.RevokeID(r.Context(), info.ID); err != nil {
		h.storeError(w, r, err)
		return
	}
	h.log.Info("admin: revoked a token", "actor", actorOf(r), "id", info.ID, "subject", info.Subject)
	h.redirectHome(w, r, info.Subject, 1)
}

func (h *Handler) pageRevokeSubject(w http.ResponseWriter, r *http.Request, d pageData, post bool) {
	src := r.URL.Query()
	if post {
		src = r.PostForm
	}
	subject := src.Get("subject")
	if err := checkSubject(subject); err != nil {
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if !post {
		infos, err := h.store.List(r.Context(), subject)
		if _, err = damagedOnly(err); err != nil { // the count is of the readable ones; RevokeSubject takes all
			h.storeError(w, r, err)
			return
		}
		d.Title, d.Subject = "Revoke every token of "+strconv.Quote(subject)+"?", subject
		d.Confirm = &confirm{Action: "/subject/revoke", Subject: subject, Count: len(infos)}
		h.renderPage(w, r, http.StatusOK, "confirm", d)
		return
	}
	n, err := h.store.RevokeSubject(r.Context(), subject)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.log.Info("admin: revoked a subject's tokens", "actor", actorOf(r), "subject", subject, "revoked", n)
	h.redirectHome(w, r, subject, n)
}

// pageRevokeFamily revokes every token of a family, from the details of
// one of its tokens: the GET's family and subject name them (or its id
// names a live token, whose details the confirmation shows); the POST
// carries the family and the subject to return to.
func (h *Handler) pageRevokeFamily(w http.ResponseWriter, r *http.Request, d pageData, post bool) {
	if post {
		family, err := parseFamilyID(r.PostForm.Get("family"))
		if err != nil {
			h.refuse(w, r, http.StatusBadRequest, "invalid_id", err.Error())
			return
		}
		subject := r.PostForm.Get("subject")
		if err := checkSubject(subject); err != nil {
			h.refuse(w, r, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		// The confirmation counted the family among subject's tokens: a
		// subject that holds none (a crafted link, or revoked meanwhile)
		// revokes nothing, so that what was confirmed is what is done.
		infos, err := h.store.List(r.Context(), subject)
		if _, err = damagedOnly(err); err != nil {
			h.storeError(w, r, err)
			return
		}
		if !slices.ContainsFunc(infos, func(t tokenstore.Info) bool { return t.FamilyID == family }) {
			h.refuse(w, r, http.StatusBadRequest, "invalid_request", "this subject holds no live token of this family (revoked already, or the family is another subject's): nothing was revoked")
			return
		}
		n, err := h.store.RevokeFamily(r.Context(), family)
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		h.log.Info("admin: revoked a family", "actor", actorOf(r), "family", family, "subject", subject, "revoked", n)
		h.redirectHome(w, r, subject, n)
		return
	}
	q := r.URL.Query()
	var family uuid.UUID
	var subject string
	if q.Has("family") {
		// From a token's details: the family and its subject, not the
		// token's ID, whose record is gone when the token was found by
		// the token itself within its grace (rotated away, yet valid).
		var err error
		if family, err = parseFamilyID(q.Get("family")); err != nil {
			h.refuse(w, r, http.StatusBadRequest, "invalid_id", err.Error())
			return
		}
		subject = q.Get("subject")
		if err := checkSubject(subject); err != nil {
			h.refuse(w, r, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
	} else {
		info, ok := h.getByID(w, r, q.Get("id"))
		if !ok {
			return
		}
		v := h.view(info, h.now())
		d.Token, family, subject = &v, info.FamilyID, info.Subject
	}
	// A family's tokens share its subject: count them among the subject's.
	infos, err := h.store.List(r.Context(), subject)
	if _, err = damagedOnly(err); err != nil {
		h.storeError(w, r, err)
		return
	}
	n := 0
	for _, t := range infos {
		if t.FamilyID == family {
			n++
		}
	}
	d.Title = "Revoke every token of this family?"
	d.Confirm = &confirm{Action: "/family/revoke", Family: family.String(), Subject: subject, Count: n}
	h.renderPage(w, r, http.StatusOK, "confirm", d)
}

// redirectHome answers a change with 303 to the subject's listing, so
// that reloading the result repeats nothing; the count is signed (see
// csrf.notice).
func (h *Handler) redirectHome(w http.ResponseWriter, r *http.Request, subject string, revoked int) {
	q := url.Values{"subject": {subject}, "revoked": {strconv.Itoa(revoked)}, "sig": {h.csrf.notice(subject, revoked, sessionOf(r))}}
	http.Redirect(w, r, h.prefix+"/?"+q.Encode(), http.StatusSeeOther)
}

// renderPage renders the template name with d, into a buffer first so
// that a template failure is a clean 500.
func (h *Handler) renderPage(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	d.Prefix = h.prefix
	d.CSRF = h.csrf.token(w, r)
	d.Login = h.login != nil && d.Actor != ""
	var buf bytes.Buffer
	if err := h.pages.ExecuteTemplate(&buf, name, d); err != nil {
		h.log.Error("admin: rendering the page failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; the cause is in the server's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
