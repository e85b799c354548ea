package admin_test

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPage_Browser_CrossOriginForms: in a real browser logged in to the
// page, a page of another origin on the same site (another loopback port:
// SameSite cookies are sent) submits forms to the handler: the page's
// revocation and RFC 7009's. Both are refused and the token stays valid.
func TestPage_Browser_CrossOriginForms(t *testing.T) {
	ctx := chromium(t)
	e := newEnv(t, backends[0].open, nil)
	victim, info := e.issueInfo("alice")
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, field, value := "/admin/token/revoke", "id", info.ID.String()
		if r.URL.Path == "/rfc7009" {
			target, field, value = "/admin/revoke", "token", victim
		}
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s%s"><input name="%s" value="%s"><button id="go">go</button></form>`,
			e.srv.URL, target, field, html.EscapeString(value))
	}))
	defer attacker.Close()

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(e.srv.URL+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("token"), e.admin),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("find-subject")),
	))
	for _, path := range []string{"/page", "/rfc7009"} {
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Navigate(attacker.URL+path),
			chromedp.WaitVisible(chromedp.ID("go")),
			chromedp.Click(chromedp.ID("go")),
			chromedp.WaitVisible(chromedp.CSS("body pre, main")),
		))
		body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		require.NoError(t, err)
		assert.Contains(t, body, "cross-origin request refused", path)
		assert.Equal(t, http.StatusOK, e.hello(victim), "%s: the token still works", path)
	}
}
