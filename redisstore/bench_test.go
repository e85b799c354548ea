package redisstore_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
)

// The benchmarks run each operation on both backends in one run, as
// sub-benchmarks backend=bolt (a *tokenstore.DB in b.TempDir(), default
// options: fsync'd writes, cached validation) and backend=redis (a Store
// on the test's redis-server on loopback, without persistence, on Redis's
// clock). Compare them with benchstat or by eye:
//
//	go test -run '^$' -bench . -benchtime 2s ./redisstore

type backend struct {
	name string
	open func(b *testing.B, p tokenstore.Policy) tokenstore.Store
}

var backends = []backend{
	{"bolt", func(b *testing.B, p tokenstore.Policy) tokenstore.Store {
		db, err := tokenstore.Open(filepath.Join(b.TempDir(), "tokens.db"), &tokenstore.Options{Policy: p, SweepInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := db.Close(); err != nil {
				b.Error(err)
			}
		})
		return db
	}},
	{"redis", func(b *testing.B, p tokenstore.Policy) tokenstore.Store {
		return newStore(b, &redisstore.Options{Policy: p, SweepInterval: -1})
	}},
}

var benchSubjects = func() (s [1024]string) {
	for i := range s {
		s[i] = "user-" + strconv.Itoa(i)
	}
	return s
}()

func BenchmarkIssue(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends {
		b.Run("backend="+be.name, func(b *testing.B) {
			s := be.open(b, tokenstore.Absolute(time.Hour))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, _, err := s.Issue(ctx, benchSubjects[i%len(benchSubjects)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkValidate validates sliding tokens from all CPUs at once, each
// call with a background context or with a deadline, as a request's
// context has (the Store then runs the call where it can stop waiting at
// the deadline). On Redis, touch=interval is the default TouchInterval
// (the uses are fresh: a read-only script each) and touch=every writes
// every use (TouchInterval < 0, what every Validate cost before).
func BenchmarkValidate(b *testing.B) {
	type variant struct {
		name  string
		open  func(b *testing.B) tokenstore.Store
		ctxed bool
	}
	pol := tokenstore.Sliding(time.Hour, 24*time.Hour)
	var variants []variant
	for _, ctxed := range []bool{false, true} {
		ctxName := "/ctx=background"
		if ctxed {
			ctxName = "/ctx=deadline"
		}
		variants = append(variants,
			variant{"backend=bolt" + ctxName, func(b *testing.B) tokenstore.Store { return backends[0].open(b, pol) }, ctxed},
			variant{"backend=redis/touch=interval" + ctxName, func(b *testing.B) tokenstore.Store {
				return newStore(b, &redisstore.Options{Policy: pol, SweepInterval: -1})
			}, ctxed},
			variant{"backend=redis/touch=every" + ctxName, func(b *testing.B) tokenstore.Store {
				return newStore(b, &redisstore.Options{Policy: pol, SweepInterval: -1, TouchInterval: -1})
			}, ctxed},
		)
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			s := v.open(b)
			tokens := issueN(b, s, 1024)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					ctx, cancel := context.Background(), context.CancelFunc(func() {})
					if v.ctxed {
						ctx, cancel = context.WithTimeout(ctx, time.Second)
					}
					_, err := s.Validate(ctx, tokens[i%len(tokens)])
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

func BenchmarkRevoke(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends {
		b.Run("backend="+be.name, func(b *testing.B) {
			s := be.open(b, tokenstore.Absolute(time.Hour))
			var pool []string
			b.ReportAllocs()
			for b.Loop() {
				if len(pool) == 0 {
					b.StopTimer()
					pool = issueN(b, s, 1000)
					b.StartTimer()
				}
				if err := s.Revoke(ctx, pool[len(pool)-1]); err != nil {
					b.Fatal(err)
				}
				pool = pool[:len(pool)-1]
			}
		})
	}
}

// issueN issues n tokens over the benchmark subjects.
func issueN(b *testing.B, s tokenstore.Store, n int) []string {
	b.Helper()
	ctx := context.Background()
	tokens := make([]string, n)
	if db, ok := s.(*tokenstore.DB); ok { // one fsync, not n
		reqs := make([]tokenstore.IssueRequest, n)
		for i := range reqs {
			reqs[i].Subject = benchSubjects[i%len(benchSubjects)]
		}
		issued, err := db.IssueBatch(ctx, reqs)
		if err != nil {
			b.Fatal(err)
		}
		for i := range issued {
			tokens[i] = issued[i].Token
		}
		return tokens
	}
	for i := range tokens {
		var err error
		if tokens[i], _, err = s.Issue(ctx, benchSubjects[i%len(benchSubjects)]); err != nil {
			b.Fatal(err)
		}
	}
	return tokens
}

// BenchmarkRotate rotates one chain of refresh tokens, as a client that
// refreshes does: each Rotate retires the token it got from the last, so
// every one also writes a tombstone and moves the family's live token.
// grace=1m derives the successor (HMAC-SHA256) and copies the old record
// into its tombstone.
func BenchmarkRotate(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends {
		for _, grace := range []time.Duration{0, time.Minute} {
			b.Run("backend="+be.name+"/grace="+grace.String(), func(b *testing.B) {
				s := be.open(b, tokenstore.Sliding(time.Hour, 0))
				token, _, err := s.Issue(ctx, "user", tokenstore.WithScopes("read", "write"))
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if token, _, err = s.Rotate(ctx, token, tokenstore.WithGrace(grace)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
