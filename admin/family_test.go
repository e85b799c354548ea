package admin_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

// rotate rotates token on the store, as the application's refresh
// endpoint does.
func (e *env) rotate(token string, opts ...tokenstore.RotateOption) (string, tokenstore.Info) {
	e.t.Helper()
	next, info, err := e.store.Rotate(context.Background(), token, opts...)
	require.NoError(e.t, err)
	e.tokens = append(e.tokens, next)
	return next, info
}

// TestFamily_API: the API, introspection and the Client show a rotated
// token's family, and revoke a family by its ID.
func TestFamily_API(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		ctx := context.Background()
		first, firstInfo := e.issueInfo("alice")
		next, nextInfo := e.rotate(first)
		require.Equal(t, firstInfo.ID, nextInfo.FamilyID)
		_, otherInfo := e.issueInfo("alice") // a family of its own

		var ti admin.TokenInfo
		e.do(req{method: "GET", path: "/admin/api/tokens/" + nextInfo.ID.String(), token: e.admin}).json(t, &ti)
		assert.Equal(t, firstInfo.ID.String(), ti.FamilyID)
		var l admin.TokenList
		e.do(req{method: "GET", path: "/admin/api/subjects/alice/tokens", token: e.admin}).json(t, &l)
		families := map[string]string{}
		for _, ti := range l.Tokens {
			families[ti.ID] = ti.FamilyID
		}
		assert.Equal(t, map[string]string{nextInfo.ID.String(): firstInfo.ID.String(), otherInfo.ID.String(): otherInfo.ID.String()}, families)

		var in admin.Introspection
		e.do(req{method: "POST", path: "/admin/introspect", token: e.admin, ctype: formType, body: form("token", next)}).json(t, &in)
		assert.True(t, in.Active)
		assert.Equal(t, nextInfo.ID.String(), in.Jti)
		assert.Equal(t, firstInfo.ID.String(), in.FamilyID)

		c := &admin.Client{BaseURL: e.srv.URL + "/admin", Token: e.admin}
		g, err := c.Get(ctx, nextInfo.ID)
		require.NoError(t, err)
		assert.Equal(t, firstInfo.ID, g.FamilyID)

		res := e.do(req{method: "DELETE", path: "/admin/api/families/not-a-uuid/tokens", token: e.admin})
		assert.Equal(t, http.StatusBadRequest, res.status)
		assert.Equal(t, "invalid_id", res.errorCode(t))
		res = e.do(req{method: "GET", path: "/admin/api/families/" + firstInfo.ID.String() + "/tokens", token: e.admin})
		assert.Equal(t, http.StatusMethodNotAllowed, res.status)
		res = e.do(req{method: "DELETE", path: "/admin/api/families/" + firstInfo.ID.String() + "/tokens"})
		assert.Equal(t, http.StatusUnauthorized, res.status, "the admin credential is required")
		assert.Equal(t, http.StatusOK, e.hello(next), "nothing was revoked")

		var rv admin.Revoked
		res = e.do(req{method: "DELETE", path: "/admin/api/families/" + firstInfo.ID.String() + "/tokens", token: e.admin})
		res.json(t, &rv)
		assert.Equal(t, http.StatusOK, res.status)
		assert.Equal(t, 1, rv.Revoked)
		assert.Equal(t, http.StatusUnauthorized, e.hello(next))
		assert.Contains(t, e.logs.String(), "admin: revoked a family")

		n, err := c.RevokeFamily(ctx, firstInfo.ID)
		require.NoError(t, err)
		assert.Equal(t, 0, n, "revoked already")
		n, err = c.RevokeFamily(ctx, uuid.New())
		require.NoError(t, err)
		assert.Equal(t, 0, n, "an unknown family")
		n, err = c.RevokeFamily(ctx, otherInfo.ID)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
	})
}

// TestFamily_Page: the page shows a token's family and revokes it through
// a confirmation, with the CSRF checks every change has.
func TestFamily_Page(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		first, firstInfo := e.issueInfo("alice")
		next, nextInfo := e.rotate(first)
		kept, keptInfo := e.issueInfo("alice")
		s := e.session()
		s.login(e.admin)

		res := s.get("/admin/?subject=alice")
		require.Equal(t, http.StatusOK, res.status)
		assert.Contains(t, res.body, "<th>Family</th>")
		assert.Contains(t, res.body, "<td><code>"+firstInfo.ID.String()+"</code></td>", "the rotated token's family is its first token's ID")
		res = s.get("/admin/?id=" + nextInfo.ID.String())
		assert.Contains(t, res.body, "<tr><th>Family</th><td><code>"+firstInfo.ID.String()+"</code></td></tr>")
		res = s.get("/admin/?id=" + keptInfo.ID.String())
		assert.Contains(t, res.body, "<code>"+keptInfo.ID.String()+"</code> (its first token)")

		res = s.get("/admin/family/revoke?id=" + nextInfo.ID.String())
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.Contains(t, res.body, "1 live token</strong> of family <code>"+firstInfo.ID.String()+"</code>")
		assert.Equal(t, http.StatusOK, e.hello(next), "the confirmation changes nothing")

		body := form("csrf_token", s.csrf, "family", firstInfo.ID.String(), "subject", "alice")
		res = s.post("/admin/family/revoke", form("family", firstInfo.ID.String(), "subject", "alice"), nil)
		assert.Equal(t, http.StatusForbidden, res.status, "no CSRF token")
		res = s.post("/admin/family/revoke", body, http.Header{"Sec-Fetch-Site": {"cross-site"}})
		assert.Equal(t, http.StatusForbidden, res.status, "cross-origin")
		assert.Equal(t, http.StatusOK, e.hello(next), "nothing was revoked")

		res = s.post("/admin/family/revoke", body, nil)
		require.Equal(t, http.StatusSeeOther, res.status, res.body)
		assert.Regexp(t, `^/admin/\?revoked=1&sig=[\w-]{43}&subject=alice$`, res.header.Get("Location"))
		assert.Equal(t, http.StatusUnauthorized, e.hello(next))
		assert.Equal(t, http.StatusOK, e.hello(kept), "another family of the subject is untouched")
		res = s.get(res.header.Get("Location"))
		assert.Contains(t, res.body, "Revoked 1 token.")

		res = s.post("/admin/family/revoke", form("csrf_token", s.csrf, "family", "nope", "subject", "alice"), nil)
		assert.Equal(t, http.StatusBadRequest, res.status)
	})
}

// TestFamily_TokenIDGiven: a rotated token's own ID where a family ID is
// expected is refused with 400 invalid_id naming the token's family, and
// revokes nothing; it answered 200 {"revoked":0} while the token lived on.
// The nil UUID names no family either.
func TestFamily_TokenIDGiven(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		first, firstInfo := e.issueInfo("alice")
		next, nextInfo := e.rotate(first)

		res := e.do(req{method: "DELETE", path: "/admin/api/families/" + nextInfo.ID.String() + "/tokens", token: e.admin})
		assert.Equal(t, http.StatusBadRequest, res.status, res.body)
		assert.Equal(t, "invalid_id", res.errorCode(t))
		assert.Contains(t, res.body, nextInfo.ID.String()+" is the ID of a token of family "+firstInfo.ID.String()+", not a family ID")
		assert.Equal(t, http.StatusOK, e.hello(next), "nothing was revoked")

		c := &admin.Client{BaseURL: e.srv.URL + "/admin", Token: e.admin}
		_, err := c.RevokeFamily(context.Background(), nextInfo.ID)
		assert.ErrorContains(t, err, "not a family ID")

		res = e.do(req{method: "DELETE", path: "/admin/api/families/" + uuid.Nil.String() + "/tokens", token: e.admin})
		assert.Equal(t, http.StatusBadRequest, res.status, res.body)
		assert.Equal(t, "invalid_id", res.errorCode(t))
	})
}

// TestFamily_PageFromTokenInGrace: a leaked token found by the token form
// within its grace (rotated away, still valid, and able to fetch its
// successor again) leads to a family confirmation that works: the link
// named the token by its ID, whose record the rotation had retired, so the
// confirmation answered 404 and the operator could not revoke the family
// from there.
func TestFamily_PageFromTokenInGrace(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		first, firstInfo := e.issueInfo("alice")
		next, _ := e.rotate(first, tokenstore.WithGrace(time.Minute))
		kept := e.issue("alice")
		s := e.session()
		s.login(e.admin)
		s.get("/admin/")

		res := s.post("/admin/token", form("csrf_token", s.csrf, "token", first), nil)
		require.Equal(t, http.StatusOK, res.status, res.body)
		m := regexp.MustCompile(`id="revoke-family-[^"]*" href="([^"]+)"`).FindStringSubmatch(res.body)
		require.NotNil(t, m, res.body)
		res = s.get(html.UnescapeString(m[1]))
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.Contains(t, res.body, "1 live token</strong> of family <code>"+firstInfo.ID.String()+"</code>")

		res = s.post("/admin/family/revoke", form("csrf_token", s.csrf, "family", firstInfo.ID.String(), "subject", "alice"), nil)
		require.Equal(t, http.StatusSeeOther, res.status, res.body)
		assert.Equal(t, http.StatusUnauthorized, e.hello(next))
		assert.Equal(t, http.StatusUnauthorized, e.hello(first))
		assert.Equal(t, http.StatusOK, e.hello(kept))

		res = s.get("/admin/family/revoke?family=nope&subject=alice")
		assert.Equal(t, http.StatusBadRequest, res.status)
		res = s.get("/admin/family/revoke?family=" + firstInfo.ID.String() + "&subject=" + url.QueryEscape(kept))
		assert.Equal(t, http.StatusBadRequest, res.status, "a token as the subject")
		assertNoTokenIn(t, res.body, kept)
	})
}

func assertNoTokenIn(t *testing.T, s, token string) {
	t.Helper()
	assert.NotContains(t, s, token)
}

// TestFamily_PageTokenInGraceSaysSo: the details of a token found within
// its grace say it was rotated away and offer its family's revocation,
// not "Revoke this token…", whose confirmation by ID answered 404 (the
// rotation retired the record; only the token itself or its family can
// revoke it).
func TestFamily_PageTokenInGraceSaysSo(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		first, firstInfo := e.issueInfo("alice")
		e.rotate(first, tokenstore.WithGrace(time.Minute))
		s := e.session()
		s.login(e.admin)
		s.get("/admin/")

		res := s.post("/admin/token", form("csrf_token", s.csrf, "token", first), nil)
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.Contains(t, res.body, "rotated away")
		assert.NotContains(t, res.body, `id="revoke-`+firstInfo.ID.String()+`"`, "a link to a 404")
		assert.Contains(t, res.body, `id="revoke-family-`+firstInfo.ID.String()+`"`)
	})
}

// TestFamily_PageSubjectMustMatch: the confirmation names a subject, and
// the POST revokes the family only if that subject holds a live token of
// it: a crafted link (?family=bob's&subject=alice) showed "0 live tokens
// of family F (of alice)" and its "Yes" revoked bob's session.
func TestFamily_PageSubjectMustMatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		bob, bobInfo := e.issueInfo("bob")
		e.issue("alice")
		s := e.session()
		s.login(e.admin)
		s.get("/admin/")

		res := s.post("/admin/family/revoke", form("csrf_token", s.csrf, "family", bobInfo.ID.String(), "subject", "alice"), nil)
		assert.Equal(t, http.StatusBadRequest, res.status, res.body)
		assert.Contains(t, res.body, "holds no live token of this family")
		assert.Equal(t, http.StatusOK, e.hello(bob), "bob's family is untouched")

		res = s.post("/admin/family/revoke", form("csrf_token", s.csrf, "family", bobInfo.ID.String(), "subject", "bob"), nil)
		assert.Equal(t, http.StatusSeeOther, res.status, res.body)
		assert.Equal(t, http.StatusUnauthorized, e.hello(bob))
	})
}
