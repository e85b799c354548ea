package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/tokenshape"
)

// Client calls the JSON API of a running application's admin handler, and
// answers as a *tokenstore.DB does: the same Info values and the same
// sentinel errors (tokenstore.ErrNotFound, ErrExpired, ErrMalformed,
// ErrTokenLimit, ...), so that a tool written for a file works against a
// running application. It is what the tokenstore command's --url mode is
// built on. A Client is safe for concurrent use.
//
// A subject that is a token (pasted in the wrong place) is refused with
// tokenstore.ErrInvalidSubject before anything is sent: subjects travel
// in URL paths, which access logs keep.
type Client struct {
	// BaseURL is where the handler is mounted, e.g.
	// "https://app.example/admin" (a trailing slash is ignored).
	BaseURL string
	// Token is the admin credential, sent as a Bearer token. Read it from
	// a file or the environment, never from argv, where ps shows it.
	Token string
	// HTTPClient sends the requests. Nil: http.DefaultClient.
	HTTPClient *http.Client
}

// APIError is a refusal or failure the admin API answered with. It unwraps
// to the sentinel its code stands for, so errors.Is works as on a file:
// not_found → tokenstore.ErrNotFound, expired → ErrExpired, reused →
// ErrReused, invalid_token → ErrMalformed, token_limit → ErrTokenLimit,
// read_only → ErrReadOnly,
// unauthorized → ErrUnauthenticated, forbidden → ErrForbidden. Its text is
// the server's description, which never holds a token.
type APIError struct {
	Status int    // HTTP status
	Code   string // Error.Code
	Desc   string // Error.Description
}

func (e *APIError) Error() string {
	return fmt.Sprintf("tokenstore admin API: %s (%d %s)", e.Desc, e.Status, e.Code)
}

// Unwrap returns the sentinel of e's code, or nil.
func (e *APIError) Unwrap() error {
	switch e.Code {
	case "not_found":
		return tokenstore.ErrNotFound
	case "expired":
		return tokenstore.ErrExpired
	case "reused":
		return tokenstore.ErrReused
	case "invalid_token":
		return tokenstore.ErrMalformed
	case "token_limit":
		return tokenstore.ErrTokenLimit
	case "read_only":
		return tokenstore.ErrReadOnly
	case "unauthorized":
		return ErrUnauthenticated
	case "forbidden":
		return ErrForbidden
	}
	return nil
}

// List returns subject's live tokens, oldest first.
func (c *Client) List(ctx context.Context, subject string) ([]tokenstore.Info, error) {
	if tokenshape.IsToken(subject) {
		return nil, errTokenAsSubject
	}
	var l TokenList
	if err := c.do(ctx, "GET", "/api/subjects/"+pathSegment(subject)+"/tokens", nil, &l); err != nil {
		return nil, err
	}
	return l.infos()
}

// Get returns the token with the given ID; for an expired one not deleted
// yet, its Info and tokenstore.ErrExpired, as DB.Get does.
func (c *Client) Get(ctx context.Context, id uuid.UUID) (tokenstore.Info, error) {
	var ti TokenInfo
	if err := c.do(ctx, "GET", "/api/tokens/"+id.String(), nil, &ti); err != nil {
		return tokenstore.Info{}, err
	}
	info, err := ti.Info()
	if err == nil && ti.Expired {
		err = fmt.Errorf("token %s: %w", id, tokenstore.ErrExpired)
	}
	return info, err
}

// Lookup returns token's Info without counting a use.
func (c *Client) Lookup(ctx context.Context, token string) (tokenstore.Info, error) {
	var ti TokenInfo
	if err := c.do(ctx, "POST", "/api/tokens/inspect", tokenRequest{token}, &ti); err != nil {
		return tokenstore.Info{}, err
	}
	return ti.Info()
}

// Revoke revokes token; tokenstore.ErrNotFound when the store does not
// hold it.
func (c *Client) Revoke(ctx context.Context, token string) error {
	return c.do(ctx, "POST", "/api/tokens/revoke", tokenRequest{token}, &Revoked{})
}

// RevokeID revokes the token with the given ID; tokenstore.ErrNotFound
// when there is none.
func (c *Client) RevokeID(ctx context.Context, id uuid.UUID) error {
	return c.do(ctx, "DELETE", "/api/tokens/"+id.String(), nil, &Revoked{})
}

// RevokeSubject revokes every token of subject and says how many.
func (c *Client) RevokeSubject(ctx context.Context, subject string) (int, error) {
	if tokenshape.IsToken(subject) {
		return 0, errTokenAsSubject
	}
	var r Revoked
	err := c.do(ctx, "DELETE", "/api/subjects/"+pathSegment(subject)+"/tokens", nil, &r)
	return r.Revoked, err
}

// RevokeFamily revokes every token of the family whose first token has
// the ID familyID, and says how many; 0 for a family without live
// tokens, as DB.RevokeFamily does.
func (c *Client) RevokeFamily(ctx context.Context, familyID uuid.UUID) (int, error) {
	var r Revoked
	err := c.do(ctx, "DELETE", "/api/families/"+familyID.String()+"/tokens", nil, &r)
	return r.Revoked, err
}

// Issue issues a token for subject with the policy and metadata of opts.
func (c *Client) Issue(ctx context.Context, subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info, error) {
	if tokenshape.IsToken(subject) {
		return "", tokenstore.Info{}, errTokenAsSubject
	}
	p, err := tokenstore.NewIssueParams(opts...)
	if err != nil {
		return "", tokenstore.Info{}, err
	}
	req := IssueRequest{Subject: subject, Metadata: p.Metadata}
	if !p.Policy.IsZero() {
		req.Policy = p.Policy.String()
	}
	var is Issued
	if err := c.do(ctx, "POST", "/api/tokens", req, &is); err != nil {
		return "", tokenstore.Info{}, err
	}
	info, err := is.Info()
	return is.Token, info, err
}

// Stats returns the store's counts and counters.
func (c *Client) Stats(ctx context.Context) (StatsResponse, error) {
	var s StatsResponse
	err := c.do(ctx, "GET", "/api/stats", nil, &s)
	return s, err
}

// Expiring returns the live tokens whose deadline falls within d from
// now, soonest first.
func (c *Client) Expiring(ctx context.Context, d time.Duration) ([]tokenstore.Info, error) {
	var l TokenList
	if err := c.do(ctx, "GET", "/api/expiring?within="+url.QueryEscape(d.String()), nil, &l); err != nil {
		return nil, err
	}
	return l.infos()
}

// infos returns the list's tokens and, when the store met damaged records,
// an error wrapping tokenstore.ErrCorrupt beside them, as a *DB's List does.
func (l *TokenList) infos() ([]tokenstore.Info, error) {
	out, err := infos(l.Tokens)
	if err == nil && l.Damaged != "" {
		err = fmt.Errorf("%w (the application says: %s)", tokenstore.ErrCorrupt, strings.TrimPrefix(l.Damaged, "tokenstore: "))
	}
	return out, err
}

// pathSegment escapes subject as one path segment. url.PathEscape leaves
// "." and "..", which a server's mux cleans away (/api/subjects/../tokens
// is /api/tokens): their dots are escaped too.
func pathSegment(subject string) string {
	if subject == "." || subject == ".." {
		return strings.ReplaceAll(subject, ".", "%2E")
	}
	return url.PathEscape(subject)
}

// maxResponse bounds a response body: a subject's tokens at the most
// metadata each, with room.
const maxResponse = 64 << 20

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	r, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("tokenstore admin API: %w", err)
	}
	if in != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Accept", "application/json")
	if c.Token != "" {
		r.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(r)
	if err != nil {
		return fmt.Errorf("tokenstore admin API: %w", err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(io.LimitReader(res.Body, maxResponse))
	if res.StatusCode >= 300 {
		var e Error
		if res.Header.Get("Content-Type") != "application/json" || dec.Decode(&e) != nil || e.Code == "" {
			return &APIError{Status: res.StatusCode, Code: "", Desc: "unexpected answer " + res.Status + " from " + method + " " + r.URL.Redacted()}
		}
		return &APIError{Status: res.StatusCode, Code: e.Code, Desc: e.Description}
	}
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("tokenstore admin API: %s %s: reading the answer: %w", method, r.URL.Redacted(), err)
	}
	return nil
}

// Info converts ti back to a tokenstore.Info.
func (ti TokenInfo) Info() (tokenstore.Info, error) {
	id, err := uuid.Parse(ti.ID)
	if err != nil {
		return tokenstore.Info{}, fmt.Errorf("tokenstore admin API: token ID %q: %w", ti.ID, err)
	}
	p, err := tokenstore.ParsePolicy(ti.Policy)
	if err != nil {
		return tokenstore.Info{}, fmt.Errorf("tokenstore admin API: token %s: %w", ti.ID, err)
	}
	// An application older than token families sends no family_id: each
	// of its tokens is then its own family, as the store reads such records.
	family := id
	if ti.FamilyID != "" {
		if family, err = uuid.Parse(ti.FamilyID); err != nil {
			return tokenstore.Info{}, fmt.Errorf("tokenstore admin API: token %s: family ID %q: %w", ti.ID, ti.FamilyID, err)
		}
	}
	return tokenstore.Info{
		ID: id, Subject: ti.Subject,
		CreatedAt: ti.CreatedAt, LastUsedAt: ti.LastUsedAt, ExpiresAt: ti.ExpiresAt,
		Policy: p, Metadata: ti.Metadata, FamilyID: family,
	}, nil
}

func infos(ts []TokenInfo) ([]tokenstore.Info, error) {
	out := make([]tokenstore.Info, 0, len(ts))
	var errs []error
	for _, ti := range ts {
		info, err := ti.Info()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, info)
	}
	return out, errors.Join(errs...)
}
