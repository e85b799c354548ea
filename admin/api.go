package admin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/backend"
	"github.com/tokenstore/tokenstore/internal/tokenshape"
)

// TokenInfo is a token's details in the JSON API: tokenstore.Info, never
// the token. Times are RFC 3339 in UTC; Policy is in
// tokenstore.ParsePolicy's syntax; LastUsedAt equals CreatedAt until the
// first use. FamilyID is the ID of the first token of the token's family
// (the chain of tokens rotated from it): ID itself until a rotation. It is
// the same object the tokenstore command prints with --json.
type TokenInfo struct {
	ID         string            `json:"id"`
	FamilyID   string            `json:"family_id"`
	Subject    string            `json:"subject"`
	CreatedAt  time.Time         `json:"created_at"`
	LastUsedAt time.Time         `json:"last_used_at"`
	ExpiresAt  time.Time         `json:"expires_at"`
	Expired    bool              `json:"expired"`
	Policy     string            `json:"policy"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

// NewTokenInfo renders info as the API does, expired when now is past its
// deadline.
func NewTokenInfo(info tokenstore.Info, now time.Time) TokenInfo {
	return TokenInfo{
		ID:         info.ID.String(),
		FamilyID:   info.FamilyID.String(),
		Subject:    info.Subject,
		CreatedAt:  info.CreatedAt.UTC(),
		LastUsedAt: info.LastUsedAt.UTC(),
		ExpiresAt:  info.ExpiresAt.UTC(),
		Expired:    !now.Before(info.ExpiresAt),
		Policy:     info.Policy.String(),
		Metadata:   info.Metadata,
	}
}

// TokenList is the answer of the list and expiring routes.
type TokenList struct {
	Subject string      `json:"subject,omitempty"` // list
	Within  string      `json:"within,omitempty"`  // expiring: the duration asked, in Go syntax
	Tokens  []TokenInfo `json:"tokens"`            // never null
	// Damaged is set when the store met damaged records: Tokens holds
	// every readable one, and this names the others by ID (never a token),
	// as the store's ErrCorrupt does.
	Damaged string `json:"damaged,omitempty"`
}

// IssueRequest is the body of POST /api/tokens.
type IssueRequest struct {
	Subject  string            `json:"subject"`
	Policy   string            `json:"policy,omitempty"` // "absolute(24h)", "sliding(idle=1h,max=720h)"; "": the store's default
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Issued is the answer of POST /api/tokens: the token, shown this once,
// and its details.
type Issued struct {
	Token string `json:"token"`
	TokenInfo
}

// Revoked is the answer of the revoke routes: how many tokens went.
type Revoked struct {
	Revoked int `json:"revoked"`
}

// StatsResponse is the answer of GET /api/stats.
type StatsResponse struct {
	// Tokens counts the stored tokens by walking them; Live, Expired and
	// Policies are absent on a store that is not a [Walker].
	Tokens struct {
		Total    int64          `json:"total"`
		Live     *int64         `json:"live,omitempty"`
		Expired  *int64         `json:"expired,omitempty"`
		Policies map[string]int `json:"policies,omitempty"` // by Policy.String
		// Damaged names the damaged records the walk stepped over; the
		// counts above are of the readable ones.
		Damaged string `json:"damaged,omitempty"`
	} `json:"tokens"`
	// Counters are the store's tokenstore.Stats since it was opened.
	Counters Counters `json:"counters"`
	// File describes a *tokenstore.DB's file; absent on other stores.
	File *FileStats `json:"file,omitempty"`
}

// Counters are tokenstore.Stats' counters.
type Counters struct {
	Issued            uint64 `json:"issued"`
	Validated         uint64 `json:"validated"`
	Lookups           uint64 `json:"lookups"`
	Revoked           uint64 `json:"revoked"`
	Swept             uint64 `json:"swept"`
	RejectedMalformed uint64 `json:"rejected_malformed"`
	RejectedNotFound  uint64 `json:"rejected_not_found"`
	RejectedExpired   uint64 `json:"rejected_expired"`
	RejectedReused    uint64 `json:"rejected_reused"`
	TouchWrites       uint64 `json:"touch_writes"`
	TouchesPersisted  uint64 `json:"touches_persisted"`
	CacheHits         uint64 `json:"cache_hits"`
	CacheMisses       uint64 `json:"cache_misses"`
}

// FileStats is tokenstore.FileInfo.
type FileStats struct {
	Path      string        `json:"path"`
	Size      int64         `json:"size"`
	PageSize  int           `json:"page_size"`
	Pages     int           `json:"pages"`
	FreePages int           `json:"free_pages"`
	Buckets   []BucketStats `json:"buckets"`
}

// BucketStats is tokenstore.BucketInfo.
type BucketStats struct {
	Name  string `json:"name"`
	Keys  int    `json:"keys"`
	Depth int    `json:"depth"`
	Pages int    `json:"pages"`
	InUse int    `json:"bytes_in_use"`
}

// Error is every error response's body, in the shape of RFC 6749 §5.2
// (and so of RFC 7009 and RFC 7662): a code from a fixed list and a
// sentence for a person, which never holds a token.
type Error struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// fileInfoer is *tokenstore.DB, for stats' file section.
type fileInfoer interface {
	FileInfo(ctx context.Context) (tokenstore.FileInfo, error)
}

// maxBody bounds a request body: an issue request with the largest
// metadata fits many times over.
const maxBody = 64 << 10

type methods map[string]http.HandlerFunc

// handle registers pattern with one handler per method, HEAD wherever
// GET is (RFC 9110 §9.3.2; net/http drops the body); other methods get
// 405 with an Allow header.
func (h *Handler) handle(pattern string, m methods) {
	if get := m[http.MethodGet]; get != nil {
		m[http.MethodHead] = get
	}
	allow := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	h.api.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if f := m[r.Method]; f != nil {
			f(w, r)
			return
		}
		h.methodNotAllowed(w, r, allow...)
	})
}

func (h *Handler) routes() {
	p := h.prefix
	h.handle(p+"/api/subjects/{subject}/tokens", methods{http.MethodGet: h.apiList, http.MethodDelete: h.apiRevokeSubject})
	h.handle(p+"/api/tokens/{id}", methods{http.MethodGet: h.apiGet, http.MethodDelete: h.apiRevokeID})
	h.handle(p+"/api/families/{id}/tokens", methods{http.MethodDelete: h.apiRevokeFamily})
	h.handle(p+"/api/tokens", methods{http.MethodPost: h.apiIssue})
	h.handle(p+"/api/tokens/inspect", methods{http.MethodPost: h.apiInspect})
	h.handle(p+"/api/tokens/revoke", methods{http.MethodPost: h.apiRevoke})
	h.handle(p+"/api/stats", methods{http.MethodGet: h.apiStats})
	h.handle(p+"/api/expiring", methods{http.MethodGet: h.apiExpiring})
	h.handle(p+"/introspect", methods{http.MethodPost: h.introspect})
	h.handle(p+"/revoke", methods{http.MethodPost: h.revocation})
	h.api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.refuse(w, r, http.StatusNotFound, "unknown_route", "no such admin route")
	})
}

func (h *Handler) apiList(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	if err := checkSubject(subject); err != nil {
		h.storeError(w, r, err)
		return
	}
	infos, err := h.store.List(r.Context(), subject)
	damaged, err := damagedOnly(err)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, TokenList{Subject: subject, Tokens: h.render(infos), Damaged: damaged})
}

func (h *Handler) apiRevokeSubject(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	if err := checkSubject(subject); err != nil {
		h.storeError(w, r, err)
		return
	}
	n, err := h.store.RevokeSubject(r.Context(), subject)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.log.Info("admin: revoked a subject's tokens", "actor", actorOf(r), "subject", subject, "revoked", n)
	h.writeJSON(w, http.StatusOK, Revoked{n})
}

// apiGet answers 200 for an expired token not swept yet too, with
// "expired": true: the details are what an operator looks for.
func (h *Handler) apiGet(w http.ResponseWriter, r *http.Request) {
	info, ok := h.getByID(w, r, r.PathValue("id"))
	if !ok {
		return
	}
	h.writeJSON(w, http.StatusOK, NewTokenInfo(info, h.now()))
}

// getByID reads the token whose ID is raw, an expired one not swept yet
// too (its details are what an operator looks for). On a bad ID or a
// store error it has answered already and reports false.
func (h *Handler) getByID(w http.ResponseWriter, r *http.Request, raw string) (tokenstore.Info, bool) {
	id, err := parseID(raw)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, "invalid_id", err.Error())
		return tokenstore.Info{}, false
	}
	info, err := h.store.Get(r.Context(), id)
	if err != nil && !errors.Is(err, tokenstore.ErrExpired) {
		h.storeError(w, r, err)
		return tokenstore.Info{}, false
	}
	return info, true
}

func (h *Handler) apiRevokeID(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, "invalid_id", err.Error())
		return
	}
	if err := h.store.RevokeID(r.Context(), id); err != nil {
		h.storeError(w, r, err)
		return
	}
	h.log.Info("admin: revoked a token", "actor", actorOf(r), "id", id)
	h.writeJSON(w, http.StatusOK, Revoked{1})
}

// apiRevokeFamily revokes every token of a family: 200 with how many,
// 0 for a family without live tokens (unknown, or revoked already).
func (h *Handler) apiRevokeFamily(w http.ResponseWriter, r *http.Request) {
	id, err := parseFamilyID(r.PathValue("id"))
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, "invalid_id", err.Error())
		return
	}
	// A token's own ID names no family unless the token is its family's
	// first: RevokeFamily would revoke 0 while the token lives on, which
	// an operator who took the wrong column reads as "done".
	if info, err := h.store.Get(r.Context(), id); (err == nil || errors.Is(err, tokenstore.ErrExpired)) && info.FamilyID != id && info.FamilyID != uuid.Nil {
		h.refuse(w, r, http.StatusBadRequest, "invalid_id", fmt.Sprintf("%s is the ID of a token of family %s, not a family ID: revoke that family, or the token by its ID", id, info.FamilyID))
		return
	}
	n, err := h.store.RevokeFamily(r.Context(), id)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.log.Info("admin: revoked a family", "actor", actorOf(r), "family", id, "revoked", n)
	h.writeJSON(w, http.StatusOK, Revoked{n})
}

func (h *Handler) apiIssue(w http.ResponseWriter, r *http.Request) {
	var req IssueRequest
	if !h.readJSON(w, r, &req) {
		return
	}
	if tokenshape.IsToken(req.Subject) {
		h.storeError(w, r, errTokenAsSubject)
		return
	}
	opts := []tokenstore.IssueOption{tokenstore.WithMetadata(req.Metadata)}
	if req.Policy != "" {
		p, err := tokenstore.ParsePolicy(req.Policy)
		if err != nil {
			msg := "policy: " + err.Error()
			if strings.Contains(msg, strconv.Quote(req.Policy)) {
				// ParsePolicy quotes what it cannot parse: not echoed,
				// it may be a token pasted in the wrong field.
				msg = `policy: not a policy; want one such as "absolute(24h)", "sliding(idle=1h)" or "sliding(idle=1h, max=720h)"`
			}
			h.refuse(w, r, http.StatusBadRequest, "invalid_request", msg)
			return
		}
		opts = append(opts, tokenstore.WithPolicy(p))
	}
	token, info, err := h.store.Issue(r.Context(), req.Subject, opts...)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.log.Info("admin: issued a token", "actor", actorOf(r), "subject", info.Subject, "id", info.ID)
	h.writeJSON(w, http.StatusCreated, Issued{Token: token, TokenInfo: NewTokenInfo(info, h.now())})
}

// tokenRequest is the body of the routes that take a token: in the body,
// never in the URL, which logs keep.
type tokenRequest struct {
	Token string `json:"token"`
}

func (h *Handler) apiInspect(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if !h.readJSON(w, r, &req) {
		return
	}
	if req.Token == "" {
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", `the body has no "token"`)
		return
	}
	info, err := h.store.Lookup(r.Context(), req.Token)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, NewTokenInfo(info, h.now()))
}

func (h *Handler) apiRevoke(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if !h.readJSON(w, r, &req) {
		return
	}
	if req.Token == "" {
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", `the body has no "token"`)
		return
	}
	id, err := h.idOf(r, req.Token)
	if errors.Is(err, tokenstore.ErrReused) {
		// The Lookup found a rotated-away token presented again: the store
		// has revoked its family. Say so, not "not found".
		h.storeError(w, r, err)
		return
	}
	if err := h.store.Revoke(r.Context(), req.Token); err != nil {
		h.storeError(w, r, err)
		return
	}
	h.log.Info("admin: revoked a token", "actor", actorOf(r), "id", id)
	h.writeJSON(w, http.StatusOK, Revoked{1})
}

// idOf is token's ID for a log line, or "unknown" (an expired token's
// Lookup returns no Info), with the Lookup's error.
func (h *Handler) idOf(r *http.Request, token string) (string, error) {
	info, err := h.store.Lookup(r.Context(), token)
	if err == nil {
		return info.ID.String(), nil
	}
	return "unknown", err
}

func (h *Handler) apiStats(w http.ResponseWriter, r *http.Request) {
	var s StatsResponse
	st := h.store.Stats()
	s.Counters = Counters{
		Issued: st.Issued, Validated: st.Validated, Lookups: st.Lookups, Revoked: st.Revoked, Swept: st.Swept,
		RejectedMalformed: st.RejectedMalformed, RejectedNotFound: st.RejectedNotFound, RejectedExpired: st.RejectedExpired, RejectedReused: st.RejectedReused,
		TouchWrites: st.TouchWrites, TouchesPersisted: st.TouchesPersisted, CacheHits: st.CacheHits, CacheMisses: st.CacheMisses,
	}
	s.Tokens.Total = st.Tokens
	if h.walk != nil {
		var live, expired int64
		s.Tokens.Policies = map[string]int{}
		now := h.now()
		err := h.walk.ForEach(r.Context(), func(info tokenstore.Info) error {
			if now.Before(info.ExpiresAt) {
				live++
			} else {
				expired++
			}
			s.Tokens.Policies[info.Policy.String()]++
			return nil
		})
		s.Tokens.Damaged, err = damagedOnly(err)
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		s.Tokens.Total, s.Tokens.Live, s.Tokens.Expired = live+expired, &live, &expired
	}
	if f, ok := h.store.(fileInfoer); ok {
		fi, err := f.FileInfo(r.Context())
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		s.File = &FileStats{Path: fi.Path, Size: fi.Size, PageSize: fi.PageSize, Pages: fi.Pages, FreePages: fi.FreePages}
		for _, b := range fi.Buckets {
			s.File.Buckets = append(s.File.Buckets, BucketStats(b))
		}
	}
	h.writeJSON(w, http.StatusOK, s)
}

// apiExpiring lists the live tokens whose deadline falls within the given
// duration from now, soonest first.
func (h *Handler) apiExpiring(w http.ResponseWriter, r *http.Request) {
	if h.walk == nil {
		h.refuse(w, r, http.StatusNotImplemented, "not_implemented", "this store cannot list its tokens (it has no ForEach method)")
		return
	}
	within, err := time.ParseDuration(r.URL.Query().Get("within"))
	if err != nil || within <= 0 {
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", `"within" must be a positive Go duration such as 90m or 24h`)
		return
	}
	now := h.now()
	until := now.Add(within)
	var infos []tokenstore.Info
	err = h.walk.ForEach(r.Context(), func(info tokenstore.Info) error {
		if now.Before(info.ExpiresAt) && !info.ExpiresAt.After(until) {
			infos = append(infos, info)
		}
		return nil
	})
	damaged, err := damagedOnly(err)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	slices.SortStableFunc(infos, func(a, b tokenstore.Info) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	h.writeJSON(w, http.StatusOK, TokenList{Within: within.String(), Tokens: h.render(infos), Damaged: damaged})
}

// damagedOnly splits a pass's error: ErrCorrupt from records the store
// stepped over (it did its work on every other one, and its message names
// them by ID) is reported beside the results, as its text; any other error
// fails the request.
func damagedOnly(err error) (string, error) {
	if errors.Is(err, tokenstore.ErrCorrupt) {
		return err.Error(), nil
	}
	return "", err
}

func (h *Handler) render(infos []tokenstore.Info) []TokenInfo {
	now := h.now()
	out := make([]TokenInfo, 0, len(infos))
	for _, info := range infos {
		out = append(out, NewTokenInfo(info, now))
	}
	return out
}

// readJSON decodes r's body into v, refusing other media types, unknown
// fields (a misspelt "polcy" must not issue a default token), keys twice
// or in another case (see checkKeys) and trailing data.
func (h *Handler) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		h.refuse(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as Content-Type: application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil {
		err = checkKeys(body, jsonFields(v))
	}
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
		if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		// Not the decoder's text: it can quote the body, which may hold a token.
		msg := "the body is not the JSON object this route takes"
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			msg += ": a field has the wrong type"
		} else if strings.HasPrefix(err.Error(), "json: unknown field") || errors.Is(err, errUnknownKey) {
			msg += ": it has an unknown field (names are case-sensitive)"
		} else if errors.Is(err, errKeyTwice) {
			msg += ": it has a key twice"
		} else if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			msg = fmt.Sprintf("the body is larger than %d bytes", maxBody)
		}
		h.refuse(w, r, http.StatusBadRequest, "invalid_request", msg)
		return false
	}
	return true
}

var (
	errKeyTwice   = errors.New("a key twice")
	errUnknownKey = errors.New("an unknown key")
)

// checkKeys refuses a JSON body with a key twice in one object, at any
// depth, or a top-level key that is not exactly one of fields.
// encoding/json takes the last of two equal keys and matches keys
// case-insensitively: {"policy":"absolute(1h)","policy":""} would issue a
// token with the default policy, and a proxy or log that reads the first
// key would see another request than the store did. Syntax errors are
// left to the decoder.
func checkKeys(body []byte, fields []string) error {
	type object struct {
		keys    map[string]bool
		wantKey bool
	}
	var stack []*object // nil entries are arrays
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1] != nil {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		t, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or a syntax error the decoder reports
		}
		if n := len(stack); n > 0 && stack[n-1] != nil && stack[n-1].wantKey {
			if t == json.Delim('}') {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			key, _ := t.(string)
			if stack[n-1].keys[key] {
				return errKeyTwice
			}
			if n == 1 && !slices.Contains(fields, key) {
				return errUnknownKey
			}
			stack[n-1].keys[key] = true
			stack[n-1].wantKey = false
			continue
		}
		switch t {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, nil)
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		valueDone()
	}
}

// jsonFields are the JSON names of the fields of the struct v points to.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v).Elem()
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

func (h *Handler) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// storeError answers a store's error: the sentinels as the client's
// fault, a closed store, one that timed out or a cancelled request as
// 503, anything else as 500 whose cause is logged, not sent.
func (h *Handler) storeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, desc := http.StatusInternalServerError, "server_error", "the store failed; the cause is in the server's log"
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		status, code, desc = http.StatusNotFound, "not_found", "no such token (never issued, revoked, or expired and deleted)"
	case errors.Is(err, tokenstore.ErrExpired):
		status, code, desc = http.StatusGone, "expired", "the token has expired (not deleted yet)"
	case errors.Is(err, tokenstore.ErrReused):
		status, code, desc = http.StatusGone, "reused", descReused
	case errors.Is(err, tokenstore.ErrMalformed):
		status, code, desc = http.StatusBadRequest, "invalid_token", "not a token of this store (wrong length, prefix or checksum)"
	case errors.Is(err, tokenstore.ErrInvalidSubject), errors.Is(err, tokenstore.ErrInvalidPolicy),
		errors.Is(err, tokenstore.ErrMetadataTooLarge):
		// These texts describe the input, never a token.
		status, code, desc = http.StatusBadRequest, "invalid_request", err.Error()
	case errors.Is(err, tokenstore.ErrTokenLimit):
		status, code, desc = http.StatusConflict, "token_limit", err.Error()
	case errors.Is(err, tokenstore.ErrReadOnly):
		status, code, desc = http.StatusConflict, "read_only", "the store is open read-only"
	case errors.Is(err, tokenstore.ErrClosed), r.Context().Err() != nil, backend.IsTimeout(err):
		status, code, desc = http.StatusServiceUnavailable, "temporarily_unavailable", "the store is closed, did not answer in time, or the request was cancelled"
		h.log.Warn("admin: store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	default:
		h.log.Error("admin: store failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	h.refuse(w, r, status, code, desc)
}

// descReused is the description of a reused token: what happened, and
// that the store has already acted on it.
const descReused = "the token was rotated away and presented again after its grace: every token of its family is now revoked, and its holder must authenticate again"

// authError answers an Authorizer's refusal or failure. The challenge is
// RFC 6750 §3.1's: no error code without credentials, invalid_token for a
// token refused, insufficient_scope for one without the admin scope. The
// RFC 7662 and RFC 7009 routes use those codes in the body too (RFC 7662
// §2.3); the JSON API keeps its own, which admin.Client maps.
func (h *Handler) authError(w http.ResponseWriter, r *http.Request, err error) {
	oauth := isOAuth(strings.TrimPrefix(r.URL.Path, h.prefix))
	switch {
	case errors.Is(err, ErrUnauthenticated):
		c, code := `Bearer realm="tokenstore admin"`, "unauthorized"
		if _, ok := errors.AsType[invalidToken](err); ok {
			c += `, error="invalid_token"`
			if oauth {
				code = "invalid_token"
			}
		}
		w.Header().Set("WWW-Authenticate", c)
		h.refuse(w, r, http.StatusUnauthorized, code, "admin credentials required")
	case errors.Is(err, ErrForbidden):
		c, code := `Bearer realm="tokenstore admin", error="insufficient_scope"`, "forbidden"
		if h.login != nil {
			c += fmt.Sprintf(", scope=%q", h.login.Scope)
		}
		if oauth {
			code = "insufficient_scope"
		}
		w.Header().Set("WWW-Authenticate", c)
		h.refuse(w, r, http.StatusForbidden, code, "these credentials do not allow administration")
		h.log.Warn("admin: refused", "method", r.Method, "path", r.URL.Path, "err", err)
	default:
		h.storeError(w, r, err)
	}
}

func (h *Handler) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	h.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; allowed: "+strings.Join(allow, ", "))
}

// refuse writes an error: JSON on the API routes, a page on the page's.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	path := strings.TrimPrefix(r.URL.Path, h.prefix)
	if isAPI(path) || !strings.HasPrefix(r.URL.Path, h.prefix) {
		h.writeJSON(w, status, Error{Code: code, Description: desc})
		return
	}
	h.renderPage(w, r, status, "error", pageData{Title: http.StatusText(status), Error: cmp.Or(desc, code)})
}
