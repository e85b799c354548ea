package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every kind of delete, seen by Validates and Lookups that began after it
// returned, from other goroutines, while uses are flushed and the clean
// cache dropped (so that most calls read the file in kept transactions):
// Revoke, RevokeID, RevokeSubject, RevokeFamily and the family revoked by
// a reuse after a Rotate. A token whose delete returned before a call
// began is never answered valid; a token no delete has reached yet always
// is.
func TestReadTxs_EveryDeleteSeenByLaterCalls(t *testing.T) {
	const n = 600 // victims, 5 kinds of delete
	o := &Options{SweepInterval: -1, TouchInterval: 2 * time.Millisecond, CacheSize: 64}
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	ctx := t.Context()

	type victim struct {
		tok   string // what the readers present
		other string // RevokeSubject's second token, or the reused predecessor
		info  Info
		dead  atomic.Bool // its delete has returned
	}
	vs := make([]*victim, n)
	for i := range vs {
		v := &victim{}
		tok, info, err := db.Issue(ctx, fmt.Sprintf("user-%d", i))
		require.NoError(t, err)
		v.tok, v.info = tok, info
		switch i % 5 {
		case 2: // RevokeSubject: a second token of the subject
			v.other, _, err = db.Issue(ctx, fmt.Sprintf("user-%d", i))
			require.NoError(t, err)
		case 4: // reuse: the readers present the successor
			v.other = tok
			v.tok, v.info, err = db.Rotate(ctx, tok)
			require.NoError(t, err)
		}
		vs[i] = v
	}
	var progress atomic.Int64 // vs[:progress] are deleted or being deleted
	stop := make(chan struct{})
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := rng.IntN(n)
				v := vs[i]
				toks := []string{v.tok}
				if i%5 == 2 {
					toks = append(toks, v.other)
				}
				tok := toks[rng.IntN(len(toks))]
				dead := v.dead.Load()
				var err error
				if rng.IntN(2) == 0 {
					_, err = db.Validate(ctx, tok)
				} else {
					_, err = db.Lookup(ctx, tok)
				}
				reached := int64(i) < progress.Load()
				switch {
				case dead && err == nil:
					errs <- fmt.Errorf("victim %d (kind %d): valid after its delete returned", i, i%5)
					return
				case !reached && err != nil:
					errs <- fmt.Errorf("victim %d (kind %d), not deleted: %w", i, i%5, err)
					return
				}
			}
		})
	}
	wg.Go(func() { // drops clean entries, so that calls read the file
		for {
			select {
			case <-stop:
				return
			default:
			}
			db.DropCleanCache()
			time.Sleep(100 * time.Microsecond)
		}
	})
	for i, v := range vs {
		progress.Store(int64(i + 1))
		var err error
		switch i % 5 {
		case 0:
			err = db.Revoke(ctx, v.tok)
		case 1:
			err = db.RevokeID(ctx, v.info.ID)
		case 2:
			var k int
			k, err = db.RevokeSubject(ctx, fmt.Sprintf("user-%d", i))
			if err == nil && k != 2 {
				err = fmt.Errorf("RevokeSubject revoked %d", k)
			}
		case 3:
			var k int
			k, err = db.RevokeFamily(ctx, v.info.FamilyID)
			if err == nil && k != 1 {
				err = fmt.Errorf("RevokeFamily revoked %d", k)
			}
		case 4:
			if _, err = db.Validate(ctx, v.other); errors.Is(err, ErrReused) {
				err = nil
			} else {
				err = fmt.Errorf("the predecessor after a use of its successor: %v", err)
			}
		}
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("victim %d (kind %d): %v", i, i%5, err)
		}
		v.dead.Store(true)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Close while goroutines Validate and Lookup uncached tokens and a
// writer writes: it returns (a kept transaction or one in use would make
// bbolt's Close wait for ever), and so does every call, with ErrClosed
// once Close has begun.
func TestReadTxs_CloseDuringCalls(t *testing.T) {
	for round := range 5 {
		o := &Options{SweepInterval: -1, TouchInterval: time.Millisecond, CacheSize: 64}
		db, toks := openReadTxs(t, o, 500)
		ctx := context.Background()
		var calls atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 6 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), uint64(round)))
				for {
					var err error
					if g%2 == 0 {
						_, err = db.Validate(ctx, toks[rng.IntN(len(toks))])
					} else {
						db.DropCleanCache()
						_, err = db.Lookup(ctx, toks[rng.IntN(len(toks))])
					}
					calls.Add(1)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Go(func() {
			for i := 0; ; i++ {
				if _, _, err := db.Issue(ctx, fmt.Sprintf("w-%d", i)); err != nil {
					if !errors.Is(err, ErrClosed) {
						errs <- err
					}
					return
				}
			}
		})
		for calls.Load() < 2000 {
			time.Sleep(time.Millisecond) // not for ordering: Close races the calls wherever they are
		}
		done := make(chan error, 1)
		go func() {
			err := db.Close()
			wg.Wait()
			done <- err
		}()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Fatalf("round %d: Close or calls still running after a minute", round)
		}
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		require.Equal(t, 0, db.bolt.Stats().OpenTxN)
	}
}

// Writes that grow the file (remaps, which wait for every open read
// transaction) while goroutines Lookup uncached tokens: no deadlock.
func TestReadTxs_RemapDuringConcurrentCalls(t *testing.T) {
	db, toks := openReadTxs(t, quietOptions(), 200)
	ctx := t.Context()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 3))
			for {
				select {
				case <-stop:
					return
				default:
				}
				db.DropCleanCache()
				if _, err := db.Lookup(ctx, toks[rng.IntN(len(toks))]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 30 && err == nil; i++ {
			reqs := make([]IssueRequest, 500)
			for j := range reqs {
				reqs[j] = IssueRequest{Subject: fmt.Sprintf("u%d-%d", i, j)}
			}
			_, err = db.IssueBatch(ctx, reqs)
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("writes that grow the file waited a minute beside concurrent Lookups")
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
