package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

// The environment variables of --url mode. The credential has no flag that
// takes it as a value: argv is what ps shows every user of the machine.
const (
	envURL        = "TOKENSTORE_URL"         // --url's default
	envAdminToken = "TOKENSTORE_ADMIN_TOKEN" // the admin credential, unless --credential-file
)

// remoteTimeout bounds each request to the application unless --timeout
// is given: an application under load answers in well under that.
const remoteTimeout = 30 * time.Second

// maxCredential bounds what is read from --credential-file.
const maxCredential = 4096

// The failures of --url mode that have no sentinel in the library. They
// name errorJSON's code for scripts.
var (
	errUnreachable = errors.New("application unreachable")    // "unreachable"
	errBadAnswer   = errors.New("not a tokenstore admin API") // "bad_answer"
	errServer      = errors.New("the application failed")     // "server_error"
	errFileOnly    = errors.New("not available with --url")   // "file_only"
)

// remote reports whether the commands run against an application (--url,
// or TOKENSTORE_URL unless --db is given).
func (a *app) remote() bool { return a.url != "" }

// checkURL refuses a --url that cannot be the admin handler's, before
// anything is sent to it.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		shown := raw
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			shown = "…" + raw[i:] // what comes before may be a user and password
		}
		return nil, usagef("--url %q is not an http:// or https:// URL of the application's admin handler, such as http://127.0.0.1:8080/admin", shown)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, usagef("--url %s: give where the admin handler is mounted, without a query or fragment", u.Redacted())
	}
	return u, nil
}

// credential reads the admin token from --credential-file or the
// environment, and says where it came from (for error messages: never the
// token).
func (a *app) credential() (token, from string, err error) {
	if a.credFile != "" {
		from = "--credential-file " + a.credFile
		f, err := os.Open(a.credFile)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", "", &usageError{&explained{fmt.Sprintf("--credential-file %s does not exist", a.credFile), err}}
			}
			return "", "", fmt.Errorf("reading the admin credential: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(a.stderr, "tokenstore: warning: %s holds an admin credential and other users may read it (mode %04o): chmod 600 it\n", a.credFile, st.Mode().Perm())
		}
		b, err := io.ReadAll(io.LimitReader(f, maxCredential+1))
		if err != nil {
			return "", "", fmt.Errorf("reading the admin credential: %w", err)
		}
		if len(b) > maxCredential {
			return "", "", usagef("--credential-file %s is larger than %d bytes: it should hold one admin token", a.credFile, maxCredential)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if token = strings.TrimSpace(line); token == "" {
			return "", "", usagef("--credential-file %s is empty: put the admin token on its first line", a.credFile)
		}
		return token, from, nil
	}
	if token = strings.TrimSpace(os.Getenv(envAdminToken)); token != "" {
		return token, "$" + envAdminToken, nil
	}
	return "", "", usagef("--url needs an admin credential: name a file holding an admin token with --credential-file, or set %s (never on the command line, where ps shows it); issue one with: tokenstore issue --subject ops-you --scope %s", envAdminToken, admin.DefaultScope)
}

// openRemote returns the store of the application at --url.
func (a *app) openRemote() (store, error) {
	u, err := checkURL(a.url)
	if err != nil {
		return nil, err
	}
	token, from, err := a.credential()
	if err != nil {
		return nil, err
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		fmt.Fprintf(a.stderr, "tokenstore: warning: sending the admin credential to %s over plain HTTP, readable on the network: use https://\n", u.Host)
	}
	format, err := tokenstore.NewFormat(a.prefix)
	if err != nil {
		return nil, err
	}
	timeout := remoteTimeout
	if a.timeoutSet {
		timeout = a.timeout
	}
	return &remoteStore{
		c: &admin.Client{
			BaseURL:    u.String(),
			Token:      token,
			HTTPClient: &http.Client{Timeout: timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()},
		},
		format:  format,
		url:     u.Redacted(),
		from:    from,
		timeout: timeout,
	}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// remoteStore is the application's admin API as a store: an admin.Client
// whose errors are explained for the operator.
type remoteStore struct {
	c       *admin.Client
	format  tokenstore.Format // --prefix's
	url     string            // redacted, for messages
	from    string            // where the credential came from
	timeout time.Duration
}

func (s *remoteStore) List(ctx context.Context, subject string) ([]tokenstore.Info, error) {
	infos, err := s.c.List(ctx, subject)
	return infos, s.err(err)
}

func (s *remoteStore) Get(ctx context.Context, id uuid.UUID) (tokenstore.Info, error) {
	info, err := s.c.Get(ctx, id)
	return info, s.err(err)
}

func (s *remoteStore) Lookup(ctx context.Context, token string) (tokenstore.Info, error) {
	info, err := s.c.Lookup(ctx, token)
	return info, s.tokenErr(err, token)
}

func (s *remoteStore) Revoke(ctx context.Context, token string) error {
	err := s.c.Revoke(ctx, token)
	return unanswered(err, s.tokenErr(err, token), hintRevoked)
}

// The hints for a change the application was asked for and did not answer
// within --timeout: it may have made it all the same.
const (
	hintRevoked     = "the request was sent, so the application may have revoked it: run the same revoke with --missing-ok to be sure"
	hintRevokedMany = "the request was sent, so the application may have revoked them: run the same revoke again to be sure" // a subject's or a family's
	hintIssued      = "the request was sent, so the application may have issued it: list --subject shows the subject's tokens (revoke one you did not receive with revoke --id)"
)

// unanswered adds hint to shown, the operator's error for a call that
// changes the store, when raw says no answer came in time: "no answer" is
// not "not done".
func unanswered(raw, shown error, hint string) error {
	if ue, ok := errors.AsType[*url.Error](raw); ok && ue.Timeout() {
		return &explained{shown.Error() + "; " + hint, shown}
	}
	return shown
}

// tokenErr is err, or for a token the application calls malformed, the
// reason the library gives on a file (wrong length, checksum...) when the
// token is malformed for --prefix too: the API answers with a fixed text.
func (s *remoteStore) tokenErr(err error, token string) error {
	err = s.err(err)
	if errors.Is(err, tokenstore.ErrMalformed) {
		if _, perr := s.format.Parse(token); perr != nil {
			return perr
		}
	}
	return err
}

func (s *remoteStore) RevokeID(ctx context.Context, id uuid.UUID) error {
	err := s.c.RevokeID(ctx, id)
	return unanswered(err, s.err(err), hintRevoked)
}

func (s *remoteStore) RevokeSubject(ctx context.Context, subject string) (int, error) {
	n, err := s.c.RevokeSubject(ctx, subject)
	return n, unanswered(err, s.err(err), hintRevokedMany)
}

func (s *remoteStore) RevokeFamily(ctx context.Context, familyID uuid.UUID) (int, error) {
	n, err := s.c.RevokeFamily(ctx, familyID)
	return n, unanswered(err, s.err(err), hintRevokedMany)
}

func (s *remoteStore) Issue(ctx context.Context, subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info, error) {
	token, info, err := s.c.Issue(ctx, subject, opts...)
	return token, info, unanswered(err, s.err(err), hintIssued)
}

func (s *remoteStore) Expiring(ctx context.Context, d time.Duration) ([]tokenstore.Info, error) {
	infos, err := s.c.Expiring(ctx, d)
	return infos, s.err(err)
}

// Stats converts the API's answer to stats' own: policies as the file
// mode writes them, buckets with their inline flag.
func (s *remoteStore) Stats(ctx context.Context) (statsJSON, error) {
	var st statsJSON
	r, err := s.c.Stats(ctx)
	if err != nil {
		return st, s.err(err)
	}
	st.URL = s.url
	st.Tokens.Total = int(r.Tokens.Total)
	if r.Tokens.Live != nil && r.Tokens.Expired != nil {
		live, expired := int(*r.Tokens.Live), int(*r.Tokens.Expired)
		st.Tokens.Live, st.Tokens.Expired = &live, &expired
	}
	if r.Tokens.Policies != nil {
		st.Tokens.Policies = make(map[string]int, len(r.Tokens.Policies))
		for k, n := range r.Tokens.Policies {
			if p, err := tokenstore.ParsePolicy(k); err == nil {
				k = formatPolicy(p)
			}
			st.Tokens.Policies[k] += n
		}
	}
	if f := r.File; f != nil {
		st.File, st.Size = f.Path, f.Size
		st.Bolt = &boltJSON{PageSize: f.PageSize, Pages: f.Pages, FreePages: f.FreePages}
		for _, b := range f.Buckets {
			st.Bolt.Buckets = append(st.Bolt.Buckets, newBucketJSON(tokenstore.BucketInfo(b)))
		}
	}
	st.Counters = &r.Counters
	return st, nil
}

func (s *remoteStore) Close() error {
	s.c.HTTPClient.CloseIdleConnections()
	return nil
}

// err explains a failure of the admin API for the operator, keeping what
// errors.Is needs: the library's sentinels for the answers that have one,
// as a file's errors carry them.
func (s *remoteStore) err(err error) error {
	if err == nil {
		return nil
	}
	if ae, ok := errors.AsType[*admin.APIError](err); ok {
		return s.apiErr(ae)
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		if ue.Timeout() {
			return &explained{fmt.Sprintf("no answer from the application at %s within %s (is it overloaded? a longer --timeout waits more)", s.url, formatDuration(s.timeout)), errors.Join(errUnreachable, err)}
		}
		if errors.Is(err, context.Canceled) {
			return err
		}
		return &explained{fmt.Sprintf("cannot reach the application at %s: %v (is it running, and is --url where it mounts the admin handler?)", s.url, ue.Err), errors.Join(errUnreachable, err)}
	}
	if errors.Is(err, tokenstore.ErrExpired) { // Get's expired token: its Info comes with it
		return err
	}
	// Input the client refused before sending anything: the reason is the
	// library's own, and the application was never asked.
	for _, refused := range []error{tokenstore.ErrInvalidSubject, tokenstore.ErrInvalidPolicy,
		tokenstore.ErrMetadataTooLarge, tokenstore.ErrInvalidScope, tokenstore.ErrMalformed} {
		if errors.Is(err, refused) {
			return err
		}
	}
	// A 2xx answer that is not the API's JSON: --url names another server.
	return &explained{fmt.Sprintf("%s did not answer as the tokenstore admin API (%v): is --url where the application mounts the admin handler, such as http://127.0.0.1:8080/admin?", s.url, errors.Unwrap(err)), errors.Join(errBadAnswer, err)}
}

func (s *remoteStore) apiErr(ae *admin.APIError) error {
	status := fmt.Sprintf("%d %s", ae.Status, ae.Code)
	// Some descriptions are the library's own error text, prefix included.
	desc := strings.TrimPrefix(ae.Desc, "tokenstore: ")
	switch {
	case ae.Code == "unauthorized":
		return &explained{fmt.Sprintf("the application at %s refused the admin credential from %s: it is not one of the application's tokens, or it was revoked or has expired (%s)", s.url, s.from, status), ae}
	case ae.Code == "forbidden":
		return &explained{fmt.Sprintf("the admin credential from %s is a valid token without the admin permission (a token needs the scope %q in its metadata) (%s)", s.from, admin.DefaultScope, status), ae}
	case ae.Code == "":
		// Not the API's JSON: a proxy, another handler, a wrong path.
		return &explained{fmt.Sprintf("%s did not answer as the tokenstore admin API (%s): is --url where the application mounts the admin handler, such as http://127.0.0.1:8080/admin?", s.url, ae.Desc), errors.Join(errBadAnswer, ae)}
	case ae.Code == "unknown_route":
		return &explained{fmt.Sprintf("the admin API at %s has no route for this command: is --url the handler's prefix (such as http://127.0.0.1:8080/admin), and is the application's tokenstore recent enough? (%s)", s.url, status), errors.Join(errBadAnswer, ae)}
	case ae.Unwrap() != nil:
		// A sentinel: read as a file's error reads, the library's text
		// when the server sent it, else the sentinel's and the server's.
		if desc != ae.Desc {
			return &explained{ae.Desc, ae}
		}
		return &explained{ae.Unwrap().Error() + ": " + desc, ae}
	case ae.Status >= 500:
		return &explained{fmt.Sprintf("the application at %s failed: %s (%s)", s.url, desc, status), errors.Join(errServer, ae)}
	}
	return &explained{fmt.Sprintf("the application at %s refused the request: %s (%s)", s.url, desc, status), ae}
}
