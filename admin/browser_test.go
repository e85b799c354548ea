package admin_test

import (
	"context"
	"flag"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/redistest"
)

var screenshots = flag.String("admin.screenshots", "", "write the browser test's screenshots to this directory (default: the test's temporary directory)")

// chromium starts headless Chromium with a fresh profile, with the network
// features that reach outside this machine off, and returns a chromedp
// context on a tab of it. Chromium is Debian's package (apt-get install
// chromium); without it the test skips, saying so, except in CI.
func chromium(t *testing.T) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		redistest.SkipOutsideCI(t, "chromium is not installed (Debian: apt-get install chromium)")
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancel() // closes the browser and waits for it
		cancelAlloc()
	})
	return ctx
}

// TestPage_Browser: an operator, in a real browser with JavaScript
// turned off, logs in with an admin token, finds a subject, revokes one of
// its tokens through the confirmation page, and the application's
// middleware then refuses that token. Each page state is saved as a PNG.
func TestPage_Browser(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		ctx := chromium(t)
		e := newEnv(t, open, nil)
		leaked, info := e.issueInfo("alice", tokenstore.WithMetadata(map[string]string{"device": "laptop"}))
		// The subject's other token was rotated once: the page shows its
		// family, the first token's ID.
		first, firstInfo := e.issueInfo("alice")
		kept, _ := e.rotate(first)
		e.clock.Advance(time.Minute)
		require.Equal(t, http.StatusOK, e.hello(leaked))
		usedAt := e.clock.Now().UTC().Format("2006-01-02 15:04:05 UTC")

		dir := t.TempDir()
		if *screenshots != "" {
			dir = filepath.Join(*screenshots, filepath.Base(t.Name()))
			require.NoError(t, os.MkdirAll(dir, 0o755))
		}
		shot := func(name string) chromedp.Action[chromedp.Void] {
			return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				png, err := chromedp.FullScreenshot(100)(ctx, tg)
				if err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
			})
		}

		// The page must work without JavaScript: the browser runs none.
		require.NoError(t, chromedp.Do(ctx))
		_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		require.NoError(t, err)
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Navigate(e.srv.URL+"/admin/"),
			chromedp.WaitVisible(chromedp.ID("login")),
			shot("1-login"),
			chromedp.SendKeys(chromedp.ID("token"), e.admin),
			chromedp.Click(chromedp.ID("login")),
			chromedp.WaitVisible(chromedp.ID("find-subject")),
			shot("2-logged-in"),
			chromedp.SendKeys(chromedp.ID("subject"), "alice"),
			chromedp.Click(chromedp.ID("find-subject")),
			chromedp.WaitVisible(chromedp.ID("tokens")),
			shot("3-subject"),
		))
		listing, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("tokens")))
		require.NoError(t, err)
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Click(chromedp.ID("revoke-"+info.ID.String())),
			chromedp.WaitVisible(chromedp.ID("confirm")),
			shot("4-confirm"),
		))
		confirmText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		require.NoError(t, err)
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Click(chromedp.ID("confirm")),
			chromedp.WaitVisible(chromedp.CSS(".notice")),
			shot("5-revoked"),
		))
		notice, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".notice")))
		require.NoError(t, err)
		t.Logf("screenshots in %s", dir)

		assert.Contains(t, listing, info.ID.String())
		assert.Contains(t, listing, "laptop")
		assert.Contains(t, listing, usedAt, "its last use")
		assert.Contains(t, listing, firstInfo.ID.String(), "the rotated token's family")
		assert.Contains(t, confirmText, "cannot be undone")
		assert.Equal(t, "Revoked 1 token.", notice)
		assert.Equal(t, http.StatusUnauthorized, e.hello(leaked), "the revoked token is refused by the middleware")
		assert.Equal(t, http.StatusOK, e.hello(kept), "the subject's other token still works")
		for _, name := range []string{"1-login", "2-logged-in", "3-subject", "4-confirm", "5-revoked"} {
			fi, err := os.Stat(filepath.Join(dir, name+".png"))
			require.NoError(t, err)
			assert.Positive(t, fi.Size())
		}
	})
}
