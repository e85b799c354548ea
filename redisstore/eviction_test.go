package redisstore_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
)

var long = flag.Bool("redis.long", false, "run the long variants of the Redis fault tests (more memory pressure, longer pauses)")

// evictingPolicies are Redis 7's maxmemory-policy values that evict keys
// (redis.conf, "MAXMEMORY POLICY"); noeviction is the one that does not.
var evictingPolicies = []string{
	"allkeys-lru", "allkeys-lfu", "allkeys-random",
	"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
}

// rawClient is a client of srv for the test's own commands (CONFIG, INFO).
func rawClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// infoInt reads one integer field of INFO section.
func infoInt(t testing.TB, rdb *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), section).Result()
	require.NoError(t, err)
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return 0
}

type issued struct {
	token, subject string
	id             uuid.UUID
	family         uuid.UUID // zero: never rotated
}

// TestEviction fills a Redis under each evicting maxmemory-policy while a
// few users keep using their tokens and others log in, the way issue 13's
// case 1 (allkeys-lru evicts the subject index of a token kept hot by its
// use) and case 2 (volatile-lru evicts the ID key before its record) came
// about, then checks every token: one that validates must be listed, found
// by ID and revoked by RevokeSubject, and a subject limited to one token
// never holds two valid ones. Every fifth login is rotated once at once
// (a refresh), and each of those successors that validates must be
// revoked by RevokeFamily. An eviction may lose tokens; it may never
// leave one valid that a revocation cannot reach.
func TestEviction(t *testing.T) {
	srv := ownRedis(t)
	raw := rawClient(t, srv.Addr)
	margin, logins, subjects := int64(1<<20), 2500, 100
	if *long {
		margin, logins, subjects = 8<<20, 20000, 800 // the same proportions, eight times the keys
	}
	for _, policy := range evictingPolicies {
		t.Run(policy, func(t *testing.T) {
			ctx := context.Background()
			require.NoError(t, raw.ConfigSet(ctx, "maxmemory", "0").Err())
			require.NoError(t, raw.FlushAll(ctx).Err())
			require.NoError(t, raw.ConfigSet(ctx, "maxmemory-policy", policy).Err())
			require.NoError(t, raw.ConfigResetStat(ctx).Err())
			prefix := uniquePrefix()
			pol := tokenstore.Sliding(time.Hour, 0)
			s := storeOn(t, srv.Addr, &redisstore.Options{KeyPrefix: prefix, Policy: pol})
			limited := storeOn(t, srv.Addr, &redisstore.Options{KeyPrefix: prefix, Policy: pol, MaxTokensPerSubject: 1})

			// Warm up, so that scripts and connection buffers are in the
			// baseline and the margin holds tokens only.
			var warm []issued
			for i := range 50 {
				token, info, err := s.Issue(ctx, fmt.Sprintf("warm-%d", i))
				require.NoError(t, err)
				warm = append(warm, issued{token: token, subject: fmt.Sprintf("warm-%d", i), id: info.ID})
			}
			checkNoFailOpen(t, s, limited, warm)
			base := infoInt(t, raw, "memory", "used_memory")
			require.NoError(t, raw.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base+margin, 10)).Err())

			const hot = 20 // users who keep using their token while others log in
			var tokens []issued
			oom := 0
			for i := 0; i < logins; i++ {
				sub := fmt.Sprintf("user-%d", i%subjects)
				token, info, err := s.Issue(ctx, sub)
				if err != nil {
					// volatile-* cannot evict keys without a TTL: a Redis
					// full of those refuses writes, as noeviction does.
					require.ErrorContains(t, err, "OOM", "Issue under memory pressure")
					oom++
					continue
				}
				tk := issued{token: token, subject: sub, id: info.ID}
				if i%5 == 0 {
					// A refresh: the successor needs its family key too.
					next, ninfo, err := s.Rotate(ctx, token)
					switch {
					case err == nil:
						tk = issued{token: next, subject: sub, id: ninfo.ID, family: ninfo.FamilyID}
					case errors.Is(err, tokenstore.ErrNotFound):
						// Evicted already: the old token stays in the list, lost.
					default:
						require.ErrorContains(t, err, "OOM", "Rotate under memory pressure")
					}
				}
				tokens = append(tokens, tk)
				if len(tokens) > hot {
					_, err := s.Validate(ctx, tokens[i%hot].token)
					if err != nil {
						require.ErrorIs(t, err, tokenstore.ErrNotFound, "an evicted token fails closed")
					}
				}
			}
			evicted := infoInt(t, raw, "stats", "evicted_keys")
			t.Logf("%s: %d logins, %d refused for memory, %d keys evicted", policy, len(tokens), oom, evicted)
			require.Positive(t, evicted, "the test must put Redis under memory pressure")
			require.Greater(t, len(tokens), logins/2, "logins succeed under memory pressure")
			require.NoError(t, raw.ConfigSet(ctx, "maxmemory", "0").Err())
			partial := countPartial(t, raw, prefix, tokens)
			t.Logf("%d tokens whose record survived one of its index entries", partial)
			require.Positive(t, partial, "the pressure must evict some index entries and keep their records")

			lost := checkNoFailOpen(t, s, limited, tokens)
			require.Positive(t, lost, "the pressure must have cost some tokens")
		})
	}
}

// checkNoFailOpen checks that every token that validates is in its
// subject's List and found by Get; that a subject limited to one token
// holds at most one valid token after a second Issue succeeds; and that
// RevokeSubject leaves none valid. It returns how many tokens were lost.
func checkNoFailOpen(t *testing.T, s, limited *redisstore.Store, tokens []issued) (lost int) {
	t.Helper()
	ctx := context.Background()
	bySubject := map[string][]issued{}
	for _, tk := range tokens {
		bySubject[tk.subject] = append(bySubject[tk.subject], tk)
	}
	var subjects []string
	for sub := range bySubject {
		subjects = append(subjects, sub)
	}
	shown := map[uuid.UUID]bool{}
	require.NoError(t, s.ForEach(ctx, func(in tokenstore.Info) error {
		shown[in.ID] = true
		return nil
	}))
	var mu sync.Mutex
	var valid, failOpen, misShown, hidden int
	parallel(subjects, func(sub string) {
		list, err := s.List(ctx, sub)
		assert.NoError(t, err)
		listed := map[uuid.UUID]bool{}
		for _, in := range list {
			listed[in.ID] = true
		}
		for _, tk := range bySubject[sub] {
			_, verr := s.Validate(ctx, tk.token)
			if verr != nil && shown[tk.id] {
				mu.Lock()
				misShown++
				mu.Unlock()
			}
			if verr == nil && !shown[tk.id] {
				mu.Lock()
				hidden++
				mu.Unlock()
			}
			if verr != nil {
				assert.ErrorIs(t, verr, tokenstore.ErrNotFound, "an evicted token fails closed")
				mu.Lock()
				lost++
				mu.Unlock()
				continue
			}
			_, gerr := s.Get(ctx, tk.id)
			mu.Lock()
			if !listed[tk.id] || gerr != nil {
				failOpen++
				if failOpen <= 5 {
					t.Errorf("a token of %s validates, but List has it: %v, Get: %v", sub, listed[tk.id], gerr)
				}
			} else {
				valid++
			}
			mu.Unlock()
		}
	})
	t.Logf("%d tokens valid and reachable, %d lost to eviction, %d valid but unreachable", valid, lost, failOpen)
	assert.Zero(t, failOpen, "tokens valid but out of reach of List, Get and RevokeID")
	assert.Zero(t, misShown, "tokens ForEach shows that do not validate")
	// An eviction of the expiry index hides valid tokens from ForEach
	// (and from Sweep, and Stats.Tokens), which List, Get and the
	// revocations still reach; Redis still expires their keys.
	t.Logf("%d valid tokens that ForEach does not show", hidden)

	// Under a limit of one, a second Issue succeeds only when no token of
	// the subject is valid any more.
	var twice int
	parallel(subjects, func(sub string) {
		second, _, err := limited.Issue(ctx, sub)
		if errors.Is(err, tokenstore.ErrTokenLimit) {
			return
		}
		require.NoError(t, err)
		n := 0
		for _, tk := range append(bySubject[sub], issued{token: second}) {
			if _, err := s.Validate(ctx, tk.token); err == nil {
				n++
			}
		}
		if n > 1 {
			mu.Lock()
			twice++
			mu.Unlock()
		}
	})
	assert.Zero(t, twice, "subjects with two valid tokens under a limit of one")

	// A rotated token that validates is reached by its family's
	// revocation.
	var rotated, familySurvived int
	for _, tk := range tokens {
		if tk.family == (uuid.UUID{}) {
			continue
		}
		if _, err := s.Validate(ctx, tk.token); err != nil {
			continue
		}
		rotated++
		_, err := s.RevokeFamily(ctx, tk.family)
		require.NoError(t, err)
		if _, err := s.Validate(ctx, tk.token); err == nil {
			familySurvived++
		}
	}
	t.Logf("%d rotated tokens valid, revoked by RevokeFamily", rotated)
	assert.Zero(t, familySurvived, "rotated tokens valid after RevokeFamily")

	// Log out everywhere: nothing of the subject validates afterwards.
	var survived int
	parallel(subjects, func(sub string) {
		_, err := s.RevokeSubject(ctx, sub)
		assert.NoError(t, err)
		for _, tk := range bySubject[sub] {
			if _, err := s.Validate(ctx, tk.token); err == nil {
				mu.Lock()
				survived++
				mu.Unlock()
			}
		}
	})
	assert.Zero(t, survived, "tokens valid after RevokeSubject")
	return lost
}

// countPartial counts the tokens whose record is in Redis while their ID
// key or their subject index entry (or a rotated token's family key) is
// not: the state that failed open.
func countPartial(t *testing.T, raw *redis.Client, prefix string, tokens []issued) int {
	t.Helper()
	ctx := context.Background()
	pipe := raw.Pipeline()
	type probe struct {
		rec, id, fam *redis.IntCmd
		idx          *redis.FloatCmd
	}
	probes := make([]probe, len(tokens))
	for i, tk := range tokens {
		rk := recordKey(prefix, tk.token)
		probes[i] = probe{
			rec: pipe.Exists(ctx, rk),
			id:  pipe.Exists(ctx, prefix+"i:"+tk.id.String()),
			idx: pipe.ZScore(ctx, prefix+"s:"+tk.subject, rk[len(prefix)+2:]),
		}
		if tk.family != (uuid.UUID{}) {
			probes[i].fam = pipe.Exists(ctx, prefix+"f:"+tk.family.String())
		}
	}
	_, _ = pipe.Exec(ctx) // redis.Nil for the missing scores
	n, fam := 0, 0
	for _, p := range probes {
		famGone := p.fam != nil && p.fam.Val() == 0
		if p.rec.Val() == 1 && (p.id.Val() == 0 || errors.Is(p.idx.Err(), redis.Nil) || famGone) {
			n++
			if famGone {
				fam++
			}
		}
	}
	t.Logf("of them, %d rotated tokens whose family key was evicted", fam)
	return n
}

// parallel runs fn on every item with a few workers.
func parallel[T any](items []T, fn func(T)) {
	ch := make(chan T)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for it := range ch {
				fn(it)
			}
		})
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
}

// storeOn opens a Store with a fresh KeyPrefix on a client of addr, both
// closed when t ends.
func storeOn(t testing.TB, addr string, o *redisstore.Options) *redisstore.Store {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	if o.KeyPrefix == "" {
		o.KeyPrefix = uniquePrefix()
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = -1
	}
	s, err := redisstore.New(c, o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}
