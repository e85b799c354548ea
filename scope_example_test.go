package tokenstore_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenstore/tokenstore"
)

func ExampleWithScopes() {
	dir, err := os.MkdirTemp("", "tokenstore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := tokenstore.Open(filepath.Join(dir, "tokens.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()

	token, _, err := db.Issue(ctx, "alice", tokenstore.WithScopes("orders:write", "orders:read"))
	if err != nil {
		log.Fatal(err)
	}
	info, err := db.Validate(ctx, token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Scopes(), info.Metadata[tokenstore.ScopeKey])
	fmt.Println(info.HasScopes("orders:read"), info.HasScopes("orders:read", "admin"))

	_, _, err = db.Issue(ctx, "bob", tokenstore.WithScopes("orders read"))
	fmt.Println(err)
	// Output:
	// [orders:read orders:write] orders:read orders:write
	// true false
	// tokenstore: invalid scope: "orders read" holds a space (one scope per argument), which RFC 6749 §3.3 does not allow in a scope
}

// RequireScopes after Middleware: a token without the scope gets a 403
// that tells the client which scope it needs (RFC 6750 §3.1).
func ExampleRequireScopes() {
	dir, err := os.MkdirTemp("", "tokenstore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := tokenstore.Open(filepath.Join(dir, "tokens.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	auth := tokenstore.Middleware(db, tokenstore.WithRealm("shop"))
	mux := http.NewServeMux()
	mux.Handle("GET /orders", auth(tokenstore.RequireScopes("orders:read")(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "your orders") }))))
	mux.Handle("POST /orders", auth(tokenstore.RequireScopes("orders:write")(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ordered") }))))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	reader, _, err := db.Issue(context.Background(), "alice", tokenstore.WithScopes("orders:read"))
	if err != nil {
		log.Fatal(err)
	}
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, srv.URL+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+reader)
		resp, err := srv.Client().Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(method, resp.Status, strings.TrimSpace(string(body)))
		if c := resp.Header.Get("WWW-Authenticate"); c != "" {
			fmt.Println("  WWW-Authenticate:", c)
		}
	}
	// Output:
	// GET 200 OK your orders
	// POST 403 Forbidden {"error":"insufficient_scope","error_description":"the token lacks a required scope"}
	//   WWW-Authenticate: Bearer realm="shop", error="insufficient_scope", error_description="the token lacks a required scope", scope="orders:write"
}
