package tokenstore_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenstore/tokenstore"
)

// Rotation's costs beside their baselines, in the same run: a Rotate
// against an Issue (both one durable write transaction), and a Validate
// of a successor, young (within MaxGrace of its rotation; its first use
// ends its predecessor's grace) or not, against a Validate of a token never
// rotated. Uniform traffic over 2,000 tokens, from 2 goroutines per CPU;
// each store is set up once.
//
//	go test -run '^$' -bench 'Family' -benchtime 2s .
func BenchmarkFamily(b *testing.B) {
	const n = 2_000
	open := func(b *testing.B) *tokenstore.DB {
		db, err := tokenstore.Open(filepath.Join(b.TempDir(), "t.db"), &tokenstore.Options{SweepInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = db.Close() })
		return db
	}
	issue := func(b *testing.B, db *tokenstore.DB) []string {
		reqs := make([]tokenstore.IssueRequest, n)
		for i := range reqs {
			reqs[i] = tokenstore.IssueRequest{Subject: fmt.Sprintf("user-%05d", i)}
		}
		out, err := db.IssueBatch(b.Context(), reqs)
		if err != nil {
			b.Fatal(err)
		}
		tokens := make([]string, n)
		for i, is := range out {
			tokens[i] = is.Token
		}
		return tokens
	}
	validate := func(b *testing.B, db *tokenstore.DB, tokens []string) {
		b.ReportAllocs()
		b.SetParallelism(2)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for pb.Next() {
				if _, err := db.Validate(b.Context(), tokens[r.IntN(len(tokens))]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	plain := open(b)
	plainTokens := issue(b, plain)
	rotated := open(b)
	successors := issue(b, rotated)
	for i, tok := range successors {
		next, _, err := rotated.Rotate(b.Context(), tok, tokenstore.WithGrace(time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		successors[i] = next
	}
	b.Run("Validate/issued", func(b *testing.B) { validate(b, plain, plainTokens) })
	b.Run("Validate/successor-young", func(b *testing.B) { validate(b, rotated, successors) })
	// A token the store never issued (a typo, a forged or stale client):
	// ErrNotFound, which every writable store checks against its
	// tombstones too (a rotated-away token answers by its own).
	b.Run("Validate/unknown", func(b *testing.B) {
		f, err := tokenstore.NewFormat("")
		if err != nil {
			b.Fatal(err)
		}
		unknown := make([]string, n)
		for i := range unknown {
			unknown[i], _ = f.Generate()
		}
		b.ReportAllocs()
		b.SetParallelism(2)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for pb.Next() {
				if _, err := plain.Validate(b.Context(), unknown[r.IntN(len(unknown))]); !errors.Is(err, tokenstore.ErrNotFound) {
					b.Errorf("Validate of an unknown token: %v, want ErrNotFound", err)
					return
				}
			}
		})
	})
	b.Run("Issue", func(b *testing.B) {
		db := open(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := db.Issue(b.Context(), "user"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Rotate", func(b *testing.B) {
		db := open(b)
		tok, _, err := db.Issue(b.Context(), "user")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if tok, _, err = db.Rotate(b.Context(), tok, tokenstore.WithGrace(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
