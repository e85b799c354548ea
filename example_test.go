package tokenstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokenstore/tokenstore"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "tokenstore-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	db, err := tokenstore.Open(filepath.Join(dir, "tokens.db"), &tokenstore.Options{
		Policy: tokenstore.Sliding(time.Hour, 30*24*time.Hour), // idle an hour, at most 30 days
		Prefix: "myapp",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()

	ctx := context.Background()
	token, info, err := db.Issue(ctx, "user-42", tokenstore.WithMetadata(map[string]string{"scope": "read"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	// Hand token to the client once; the file keeps only its hash.
	fmt.Println(strings.HasPrefix(token, "myapp_"), info.Subject, info.Policy, info.Metadata["scope"])

	info, err = db.Validate(ctx, token) // on each request
	fmt.Println(info.Subject, err)
	// Output:
	// true user-42 sliding(idle=1h0m0s, max=720h0m0s) read
	// user-42 <nil>
}

// exampleClock is a clock the examples move by hand.
type exampleClock struct{ ms atomic.Int64 }

func (c *exampleClock) Now() time.Time { return time.UnixMilli(c.ms.Load()) }

func (c *exampleClock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

func ExampleDB_Validate() {
	dir, err := os.MkdirTemp("", "tokenstore-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	clock := &exampleClock{}
	clock.ms.Store(time.Now().UnixMilli())
	db, err := tokenstore.Open(filepath.Join(dir, "tokens.db"), &tokenstore.Options{
		Policy: tokenstore.Sliding(time.Hour, 0),
		Now:    clock.Now,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	ctx := context.Background()
	token, _, _ := db.Issue(ctx, "user-42")

	clock.Advance(50 * time.Minute)
	info, err := db.Validate(ctx, token) // a use: the token now lives until an hour from now
	fmt.Println("after 50 minutes:", info.Subject, err, info.ExpiresAt.Sub(clock.Now()))

	clock.Advance(50 * time.Minute)
	_, err = db.Validate(ctx, token)
	fmt.Println("50 minutes later:", err)

	clock.Advance(time.Hour)
	_, err = db.Validate(ctx, token)
	fmt.Println("idle an hour, expired:", errors.Is(err, tokenstore.ErrExpired))

	// A handler tells the client only "invalid token" and logs the reason.
	_, err = db.Validate(ctx, "tks_not-a-token")
	fmt.Println("garbage, malformed:", errors.Is(err, tokenstore.ErrMalformed))

	other, _, _ := db.Issue(ctx, "user-42")
	_ = db.Revoke(ctx, other)
	_, err = db.Validate(ctx, other)
	fmt.Println("revoked, not found:", errors.Is(err, tokenstore.ErrNotFound))
	// Output:
	// after 50 minutes: user-42 <nil> 1h0m0s
	// 50 minutes later: <nil>
	// idle an hour, expired: true
	// garbage, malformed: true
	// revoked, not found: true
}

func ExampleDB_Rotate() {
	dir, err := os.MkdirTemp("", "tokenstore-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	db, err := tokenstore.Open(filepath.Join(dir, "tokens.db"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	ctx := context.Background()
	old, oldInfo, _ := db.Issue(ctx, "user-42", tokenstore.WithMetadata(map[string]string{"role": "user"}))

	// Replace the token: one transaction issues the new one, in the old
	// one's family, and retires the old one.
	token, info, err := db.Rotate(ctx, old)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("new token:", token != old, info.Subject, info.Metadata["role"])
	fmt.Println("same family:", info.FamilyID == oldInfo.ID)

	// The old token presented again means one of two parties holds a
	// stolen copy: the whole family is revoked.
	_, err = db.Validate(ctx, old)
	fmt.Println("old token reused:", errors.Is(err, tokenstore.ErrReused))
	_, err = db.Validate(ctx, token)
	fmt.Println("new token revoked:", errors.Is(err, tokenstore.ErrNotFound))
	// Output:
	// new token: true user-42 user
	// same family: true
	// old token reused: true
	// new token revoked: true
}

// A client that rotated but lost the response (a timeout, a crash) rotates
// the same old token again within the grace and gets the same new token;
// the new token's first use ends the grace.
func ExampleWithGrace() {
	dir, err := os.MkdirTemp("", "tokenstore-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	db, err := tokenstore.Open(filepath.Join(dir, "tokens.db"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	ctx := context.Background()
	old, _, _ := db.Issue(ctx, "device-7")

	first, _, err := db.Rotate(ctx, old, tokenstore.WithGrace(time.Minute))
	if err != nil {
		fmt.Println(err)
		return
	}
	// The response was lost: the client still holds only the old token.
	_, err = db.Validate(ctx, old)
	fmt.Println("old token works in the grace:", err == nil)
	again, _, err := db.Rotate(ctx, old, tokenstore.WithGrace(time.Minute))
	fmt.Println("same new token:", err == nil && again == first)

	// The new token's first use ends the grace.
	_, err = db.Validate(ctx, again)
	fmt.Println("new token works:", err == nil)
	_, err = db.Validate(ctx, old)
	fmt.Println("old token now reused:", errors.Is(err, tokenstore.ErrReused))
	// Output:
	// old token works in the grace: true
	// same new token: true
	// new token works: true
	// old token now reused: true
}
