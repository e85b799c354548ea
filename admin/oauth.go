package admin

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"

	"github.com/tokenstore/tokenstore"
)

// Introspection is the answer of the RFC 7662 endpoint (§2.2). An
// inactive token, for whatever reason (malformed, unknown, revoked,
// expired, or rotated away and presented again, which revokes its
// family), gives only {"active": false}, as §2.2 requires.
type Introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`      // the token's "scope" metadata
	ClientID  string `json:"client_id,omitempty"`  // its "client_id" metadata
	TokenType string `json:"token_type,omitempty"` // "Bearer"
	Exp       int64  `json:"exp,omitempty"`        // expiry, Unix seconds
	Iat       int64  `json:"iat,omitempty"`        // issue time, Unix seconds
	Sub       string `json:"sub,omitempty"`        // the token's subject
	Jti       string `json:"jti,omitempty"`        // the token's ID
	// FamilyID is the ID of the first token of the token's family (the
	// chain of tokens rotated from it), a member §2.2 lets a server add:
	// a resource server can end a session with it (DELETE
	// /api/families/{id}/tokens).
	FamilyID string `json:"family_id,omitempty"`
}

// readTokenForm reads the "token" parameter of an RFC 7662 or RFC 7009
// request: a form-encoded POST body (RFC 7662 §2.1, RFC 7009 §2.1). A
// token in the URL's query is refused: URLs are logged.
func (h *Handler) readTokenForm(w http.ResponseWriter, r *http.Request) (string, bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", "send token=... as Content-Type: application/x-www-form-urlencoded")
		return "", false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		// Not err's text: it may quote the body.
		msg := "the body is not a valid form"
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			msg = fmt.Sprintf("the body is larger than %d bytes", maxBody)
		}
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", msg)
		return "", false
	}
	if q, _ := url.ParseQuery(r.URL.RawQuery); q.Has("token") {
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", "send the token in the body, not the URL")
		return "", false
	}
	switch tokens := r.PostForm["token"]; {
	case len(tokens) == 0 || tokens[0] == "":
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", `the "token" parameter is missing`)
		return "", false
	case len(tokens) > 1:
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", `the "token" parameter is repeated`)
		return "", false
	default:
		// token_type_hint is ignored: this store has one kind of token,
		// and RFC 7009 §2.1 and RFC 7662 §2.1 let a server search them all.
		return tokens[0], true
	}
}

// introspect is RFC 7662 token introspection. It looks the token up
// without counting a use.
func (h *Handler) introspect(w http.ResponseWriter, r *http.Request) {
	token, ok := h.readTokenForm(w, r)
	if !ok {
		return
	}
	info, err := h.store.Lookup(r.Context(), token)
	switch {
	case errors.Is(err, tokenstore.ErrMalformed), errors.Is(err, tokenstore.ErrNotFound), errors.Is(err, tokenstore.ErrExpired),
		errors.Is(err, tokenstore.ErrReused):
		h.writeJSON(w, http.StatusOK, Introspection{Active: false})
		return
	case err != nil:
		h.storeError(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, Introspection{
		Active:    true,
		Scope:     info.Metadata["scope"],
		ClientID:  info.Metadata["client_id"],
		TokenType: "Bearer",
		Exp:       info.ExpiresAt.Unix(),
		Iat:       info.CreatedAt.Unix(),
		Sub:       info.Subject,
		Jti:       info.ID.String(),
		FamilyID:  info.FamilyID.String(),
	})
}

// revocation is RFC 7009 token revocation: 200 whether or not the store
// held the token (§2.2: "invalid tokens do not cause an error"), 503 when
// the store cannot answer (§2.2.1).
func (h *Handler) revocation(w http.ResponseWriter, r *http.Request) {
	token, ok := h.readTokenForm(w, r)
	if !ok {
		return
	}
	// A rotated-away token presented here after its grace is reuse: the
	// Lookup has revoked its family (the store logs it), and the answer
	// is 200 as for any invalid token.
	id, _ := h.idOf(r, token)
	err := h.store.Revoke(r.Context(), token)
	switch {
	case err == nil:
		h.log.Info("admin: revoked a token (RFC 7009)", "actor", actorOf(r), "id", id)
	case errors.Is(err, tokenstore.ErrMalformed), errors.Is(err, tokenstore.ErrNotFound), errors.Is(err, tokenstore.ErrExpired),
		errors.Is(err, tokenstore.ErrReused):
	default:
		h.storeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}
