package reliability_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// Test 10: leaks and races. 64 goroutines run a mix of every operation on
// one store while its sweeper and background writer run and a fake clock
// moves, so tokens slide, expire and are swept under them. Run under
// -race; goleak checks that Close leaves no goroutine behind. Each
// goroutine checks that a token it revoked or rotated away never validates
// again (a rotated-away one is ErrReused, and revokes its family, which
// other goroutines' steps then meet); at the end the file is reopened and
// checked.

var stressOps = flag.Int("stress.ops", 150, "operations per goroutine of TestReliability_Race, 64 goroutines (long run: 10000)")

func TestReliability_Race(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(testSeed(t), 10))
	seed := rng.Uint64()
	path := filepath.Join(t.TempDir(), "tokens.db")
	clock := tokenstoretest.NewClockAt(epoch)
	db, err := tokenstore.Open(path, &tokenstore.Options{
		Now:                 clock.Now,
		SweepInterval:       5 * time.Millisecond,
		TouchInterval:       10 * time.Millisecond,
		CacheSize:           512, // small: evictions too
		MaxTokensPerSubject: 40,
		Policy:              tokenstore.Sliding(2*time.Second, 10*time.Second),
	})
	require.NoError(t, err)

	const workers = 64
	var (
		ops, failures, revokedValid atomic.Int64
		revokedMu                   sync.Mutex
		revoked, rotatedAway        []string
		wg                          sync.WaitGroup
	)
	policies := []tokenstore.Policy{{}, tokenstore.Absolute(time.Second), tokenstore.Absolute(time.Hour), tokenstore.Sliding(500*time.Millisecond, 0)}
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var mine []string         // tokens this goroutine issued and still may hold
			gone := map[string]bool{} // tokens this goroutine revoked (false) or rotated away (true): never valid again
			ids := map[string]uuid.UUID{}
			families := map[string]uuid.UUID{}
			fail := func(op string, err error) {
				if err != nil && !errors.Is(err, tokenstore.ErrNotFound) && !errors.Is(err, tokenstore.ErrExpired) && !errors.Is(err, tokenstore.ErrTokenLimit) &&
					!errors.Is(err, tokenstore.ErrReused) {
					failures.Add(1)
					t.Errorf("%s: %v", op, err)
				}
			}
			pick := func() string {
				if len(mine) == 0 {
					return ""
				}
				return mine[rng.IntN(len(mine))]
			}
			forget := func(tok string) {
				for i, m := range mine {
					if m == tok {
						mine = append(mine[:i], mine[i+1:]...)
						break
					}
				}
			}
			for range *stressOps {
				ops.Add(1)
				subject := fmt.Sprintf("user-%d", rng.IntN(32))
				if rng.IntN(16) == 0 {
					clock.Advance(time.Duration(rng.IntN(20)) * time.Millisecond)
				}
				switch x := rng.IntN(100); {
				case x < 20:
					tok, info, err := db.Issue(ctx, subject, tokenstore.WithPolicy(policies[rng.IntN(len(policies))]))
					fail("issue", err)
					if err == nil {
						mine = append(mine, tok)
						ids[tok], families[tok] = info.ID, info.FamilyID
					}
				case x < 22:
					out, err := db.IssueBatch(ctx, []tokenstore.IssueRequest{{Subject: subject}, {Subject: subject}})
					fail("issue batch", err)
					for _, o := range out {
						mine = append(mine, o.Token)
						ids[o.Token], families[o.Token] = o.Info.ID, o.Info.FamilyID
					}
				case x < 50:
					tok := pick()
					if tok == "" {
						continue
					}
					_, err := db.Validate(ctx, tok)
					fail("validate", err)
				case x < 56:
					if tok := pick(); tok != "" {
						_, err := db.Lookup(ctx, tok)
						fail("lookup", err)
					}
				case x < 60:
					if tok := pick(); tok != "" {
						_, err := db.Get(ctx, ids[tok])
						fail("get", err)
					}
				case x < 64:
					_, err := db.List(ctx, subject)
					fail("list", err)
				case x < 72:
					if tok := pick(); tok != "" {
						err := db.Revoke(ctx, tok)
						fail("revoke", err)
						if err == nil {
							gone[tok] = false
						}
						forget(tok)
					}
				case x < 75:
					if tok := pick(); tok != "" {
						err := db.RevokeID(ctx, ids[tok])
						fail("revoke id", err)
						if err == nil {
							gone[tok] = false
						}
						forget(tok)
					}
				case x < 76:
					_, err := db.RevokeSubject(ctx, subject)
					fail("revoke subject", err)
				case x < 84:
					if tok := pick(); tok != "" {
						newTok, info, err := db.Rotate(ctx, tok)
						fail("rotate", err)
						if err == nil {
							gone[tok] = true
							forget(tok)
							mine = append(mine, newTok)
							ids[newTok], families[newTok] = info.ID, info.FamilyID
						}
					}
				case x < 86:
					if tok := pick(); tok != "" {
						_, err := db.RevokeFamily(ctx, families[tok])
						fail("revoke family", err)
					}
				case x < 88:
					_, err := db.Sweep(ctx)
					fail("sweep", err)
				case x < 89:
					fail("for each", db.ForEach(ctx, func(tokenstore.Info) error { return nil }))
				case x < 90:
					if x == 89 && rng.IntN(8) == 0 {
						problems, err := db.Check(ctx)
						fail("check", err)
						if len(problems) > 0 {
							failures.Add(1)
							t.Errorf("Check under load: %q", problems)
						}
					}
				default:
					_ = db.Stats()
				}
				// A token this goroutine revoked or rotated away never
				// validates again.
				for tok := range gone {
					_, err := db.Validate(ctx, tok)
					if err == nil {
						revokedValid.Add(1)
						t.Errorf("a token revoked (or, %t, rotated away) validates", gone[tok])
					}
					fail("validate a token revoked or rotated away", err)
					break // one per step: map order picks which
				}
			}
			revokedMu.Lock()
			for tok, rotated := range gone {
				if rotated {
					rotatedAway = append(rotatedAway, tok)
				} else {
					revoked = append(revoked, tok)
				}
			}
			revokedMu.Unlock()
		})
	}
	wg.Wait()
	took := time.Since(start)
	st := db.Stats()
	require.NoError(t, db.Close())

	db = mustOpen(t, path, &tokenstore.Options{Now: clock.Now, SweepInterval: -1})
	mustCheck(t, db)
	n := 0
	require.NoError(t, db.ForEach(ctx, func(tokenstore.Info) error { n++; return nil }))
	assert.Equal(t, db.Stats().Tokens, int64(n), "the stored count")
	for _, tok := range revoked {
		_, err := db.Lookup(ctx, tok)
		assert.ErrorIs(t, err, tokenstore.ErrNotFound)
	}
	for _, tok := range rotatedAway {
		// Reused, or not found once its tombstone's deadline has passed.
		_, err := db.Lookup(ctx, tok)
		if !errors.Is(err, tokenstore.ErrReused) {
			assert.ErrorIs(t, err, tokenstore.ErrNotFound)
		}
	}
	require.NoError(t, db.Close())
	assert.Zero(t, failures.Load())
	assert.Zero(t, revokedValid.Load())
	t.Logf("race: %d goroutines × %d operations = %d in %s (%.0f/s) with the sweeper and the background writer running; "+
		"issued %d, validated %d, revoked %d, swept %d, touch writes %d; 0 unexpected errors, 0 revoked tokens valid, Check clean, goleak clean",
		workers, *stressOps, ops.Load(), took.Round(time.Millisecond), float64(ops.Load())/took.Seconds(),
		st.Issued, st.Validated, st.Revoked, st.Swept, st.TouchWrites)
}
