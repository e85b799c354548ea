package tokenstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/tokenstore/tokenstore"
)

// A refresh endpoint: the client trades its refresh token for a new one at
// each refresh, with a grace for a response lost on the way. A refresh
// token presented again after its grace means two parties hold it: the
// store revokes the whole family, and the client must log in again.
func Example_refreshTokens() {
	dir, err := os.MkdirTemp("", "tokenstore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	clock := &exampleClock{} // the example's clock, which it moves
	clock.ms.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli())
	db, err := tokenstore.Open(filepath.Join(dir, "tokens.db"), &tokenstore.Options{
		Now: clock.Now,
		// A refresh token dies after 14 idle days, and its family after
		// 90 days however often it is rotated: then the user logs in.
		Policy: tokenstore.Sliding(14*24*time.Hour, 90*24*time.Hour),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// refresh is RFC 6749 §6: the old refresh token in, a new one out;
	// every refusal is 400 invalid_grant (§5.2).
	refresh := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		token, info, err := db.Rotate(r.Context(), r.PostFormValue("refresh_token"), tokenstore.WithGrace(30*time.Second))
		var desc string
		switch {
		case err == nil:
			_ = json.NewEncoder(w).Encode(map[string]any{"refresh_token": token, "expires_in": int(info.ExpiresAt.Sub(clock.Now()).Seconds())})
			return
		case errors.Is(err, tokenstore.ErrReused):
			desc = "refresh token reused: every session token is revoked, log in again"
		case errors.Is(err, tokenstore.ErrExpired), errors.Is(err, tokenstore.ErrNotFound), errors.Is(err, tokenstore.ErrMalformed):
			desc = "refresh token expired or unknown, log in again"
		default:
			http.Error(w, "server error", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": desc})
	}
	srv := httptest.NewServer(http.HandlerFunc(refresh))
	defer srv.Close()

	// post refreshes with token and returns the new token, if any.
	post := func(what, token string) string {
		resp, err := srv.Client().PostForm(srv.URL, url.Values{"refresh_token": {token}})
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %d", what, resp.StatusCode)
		if resp.StatusCode != http.StatusOK {
			fmt.Printf(" %s: %s\n", body["error"], body["error_description"])
			return ""
		}
		fmt.Printf(" expires in %.0fs\n", body["expires_in"])
		return body["refresh_token"].(string)
	}

	first, _, err := db.Issue(context.Background(), "alice") // at login
	if err != nil {
		log.Fatal(err)
	}
	second := post("refresh", first)
	again := post("the same refresh, its answer lost", first)
	fmt.Println("same new token:", again == second)

	clock.Advance(time.Minute) // the grace is over
	post("the first token, replayed by a thief", first)
	post("the client's token", second)
	// Output:
	// refresh: 200 expires in 1209600s
	// the same refresh, its answer lost: 200 expires in 1209600s
	// same new token: true
	// the first token, replayed by a thief: 400 invalid_grant: refresh token reused: every session token is revoked, log in again
	// the client's token: 400 invalid_grant: refresh token expired or unknown, log in again
}
