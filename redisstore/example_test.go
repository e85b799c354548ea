package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
)

// Two instances of one application share a Redis: a token issued by one
// validates on the other, and a revocation on either holds on both. (Not
// run: it needs a Redis on localhost:6379.)
func ExampleNew() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{
		Addr: "localhost:6379",
		// The store returns by each call's deadline whatever this says;
		// with it, the client also drops a stalled connection then,
		// rather than at its ReadTimeout.
		ContextTimeoutEnabled: true,
	})
	defer rdb.Close() // after the stores: they use it but do not own it

	opts := &redisstore.Options{Policy: tokenstore.Sliding(time.Hour, 30*24*time.Hour)}
	a, err := redisstore.New(rdb, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := redisstore.New(rdb, opts) // in another process, in real life
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	token, _, err := a.Issue(ctx, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	info, err := b.Validate(ctx, token)
	switch {
	case errors.Is(err, tokenstore.ErrNotFound), errors.Is(err, tokenstore.ErrExpired),
		errors.Is(err, tokenstore.ErrMalformed), errors.Is(err, tokenstore.ErrReused):
		fmt.Println("401: invalid token")
	case err != nil:
		fmt.Println("503: token store unavailable") // Redis down: refuse, but do not blame the token
	default:
		fmt.Println("hello", info.Subject)
	}
}

// A refresh endpoint rotates the client's refresh token. With a grace, a
// client that lost the answer and retries gets the same new token; a
// rotated-away token presented after that is a theft signal: its family
// is revoked and the client must log in again. (Not run: it needs a Redis
// on localhost:6379.)
func ExampleStore_Rotate() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	store, err := redisstore.New(rdb, &redisstore.Options{
		Policy: tokenstore.Sliding(24*time.Hour, 30*24*time.Hour), // the family's cap: 30 days from login
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	refresh := func(old string) {
		next, info, err := store.Rotate(ctx, old, tokenstore.WithGrace(time.Minute))
		switch {
		case errors.Is(err, tokenstore.ErrReused):
			fmt.Println("401: token reused; every session of this login is revoked")
		case errors.Is(err, tokenstore.ErrNotFound), errors.Is(err, tokenstore.ErrExpired), errors.Is(err, tokenstore.ErrMalformed):
			fmt.Println("401: log in again")
		case err != nil:
			fmt.Println("503: token store unavailable")
		default:
			fmt.Println("new token for", info.Subject, "in family", info.FamilyID, "expires", info.ExpiresAt)
			_ = next // sent to the client, once
		}
	}
	token, _, err := store.Issue(ctx, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	refresh(token) // a new token
	refresh(token) // within the grace, before the new one is used: the same new token again
}
