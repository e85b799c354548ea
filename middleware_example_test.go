package tokenstore_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenstore/tokenstore"
)

// A complete net/http app: /login issues a token, /api/ needs one, and
// /logout revokes the caller's token.
func ExampleMiddleware() {
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

	// The protected API reads who is calling from the request's context.
	api := http.NewServeMux()
	api.HandleFunc("GET /api/me", func(w http.ResponseWriter, r *http.Request) {
		info, _ := tokenstore.FromContext(r.Context())
		fmt.Fprintf(w, "hello, %s\n", info.Subject)
	})
	api.HandleFunc("POST /api/logout", func(w http.ResponseWriter, r *http.Request) {
		info, _ := tokenstore.FromContext(r.Context())
		if err := db.RevokeID(r.Context(), info.ID); err != nil {
			http.Error(w, "cannot log out", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	mux := http.NewServeMux()
	mux.Handle("/api/", tokenstore.Middleware(db, tokenstore.WithRealm("example"))(api))
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		// A real app checks a password here.
		token, _, err := db.Issue(r.Context(), r.FormValue("user"))
		if err != nil {
			http.Error(w, "cannot log in", http.StatusBadRequest)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, token)
	})

	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := srv.Client()

	// call sends a request with the token (if any) and prints the answer.
	call := func(method, path, token string) {
		req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+path, nil)
		if err != nil {
			log.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(method, path, resp.Status)
		if c := resp.Header.Get("WWW-Authenticate"); c != "" {
			fmt.Println("  WWW-Authenticate:", c)
		}
		if len(body) > 0 {
			fmt.Println(" ", strings.TrimSpace(string(body)))
		}
	}

	resp, err := client.PostForm(srv.URL+"/login", url.Values{"user": {"alice"}})
	if err != nil {
		log.Fatal(err)
	}
	token, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	call("GET", "/api/me", string(token))
	call("GET", "/api/me", "")
	call("POST", "/api/logout", string(token))
	call("GET", "/api/me", string(token))
	// Output:
	// GET /api/me 200 OK
	//   hello, alice
	// GET /api/me 401 Unauthorized
	//   WWW-Authenticate: Bearer realm="example"
	//   {"error":"unauthorized","error_description":"authentication required"}
	// POST /api/logout 204 No Content
	// GET /api/me 401 Unauthorized
	//   WWW-Authenticate: Bearer realm="example", error="invalid_token", error_description="the token is not valid"
	//   {"error":"invalid_token","error_description":"the token is not valid"}
}
