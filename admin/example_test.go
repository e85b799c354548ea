package admin_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

// An application mounts the handler beside its own routes. An operator's
// token carries the admin scope; with it, a leaked token is revoked while
// the application runs (RFC 7009), and the middleware refuses it at once.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "admin-example")
	defer os.RemoveAll(dir)
	db, err := tokenstore.Open(filepath.Join(dir, "tokens.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	h, err := admin.New(db, &admin.Options{Prefix: "/admin", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", h)
	mux.Handle("/api/", tokenstore.Middleware(db, tokenstore.WithLogger(slog.New(slog.DiscardHandler)))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := context.Background()
	operator, _, _ := db.Issue(ctx, "ops", tokenstore.WithMetadata(map[string]string{"scope": admin.DefaultScope}))
	leaked, _, _ := db.Issue(ctx, "alice")

	call := func(method, path, token, form string) int {
		r, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(form))
		r.Header.Set("Authorization", "Bearer "+token)
		if form != "" {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	fmt.Println("API with the leaked token:", call("GET", "/api/hello", leaked, ""))
	fmt.Println("revoke without admin credentials:", call("POST", "/admin/revoke", leaked, "token="+url.QueryEscape(leaked)))
	fmt.Println("revoke as the operator:", call("POST", "/admin/revoke", operator, "token="+url.QueryEscape(leaked)))
	fmt.Println("API with the leaked token:", call("GET", "/api/hello", leaked, ""))
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// API with the leaked token: 200
	// revoke without admin credentials: 403
	// revoke as the operator: 200
	// API with the leaked token: 401
}
