package tokenstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// boltUpdate writes to db's file behind the store's back (as damage
// would), keeping readTxs' rule: no read transaction kept idle across a
// write, and none kept from before it used after.
func (db *DB) boltUpdate(fn func(*bolt.Tx) error) error {
	db.commit.reads.writeBegin()
	defer db.commit.reads.writeEnd()
	return db.bolt.Update(fn)
}

// quietOptions: no background write during the test, so that what
// begins or ends a read transaction is the test's calls alone.
func quietOptions() *Options {
	return &Options{SweepInterval: -1, TouchInterval: time.Hour}
}

func openReadTxs(t *testing.T, o *Options, n int) (*DB, []string) {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	reqs := make([]IssueRequest, n)
	for i := range reqs {
		reqs[i] = IssueRequest{Subject: fmt.Sprintf("user-%d", i)}
	}
	issued, err := db.IssueBatch(t.Context(), reqs)
	require.NoError(t, err)
	toks := make([]string, n)
	for i, is := range issued {
		toks[i] = is.Token
	}
	return db, toks
}

// A returning user's Validate, its token not cached, reads the file in a
// read transaction kept from an earlier call: it begins none.
func TestReadTxs_ColdValidatesBeginNoReadTx(t *testing.T) {
	db, toks := openReadTxs(t, quietOptions(), 200)
	ctx := t.Context()
	_, err := db.Validate(ctx, toks[0])
	require.NoError(t, err)
	before := db.bolt.Stats()
	for _, tok := range toks[1:] {
		_, err := db.Validate(ctx, tok)
		require.NoError(t, err)
	}
	after := db.bolt.Stats()
	require.Equal(t, uint64(len(toks)-1), db.Stats().CacheMisses-1, "each Validate read the file")
	require.Equal(t, before.TxN, after.TxN, "read transactions begun by 199 cold Validates")
	require.Equal(t, 1, after.OpenTxN, "the one kept")
}

// A read transaction in use while a Revoke commits is not kept after it:
// a Validate of the revoked token begun after the Revoke returned reads a
// transaction that sees the delete.
func TestReadTxs_InUseDuringWriteNotKept(t *testing.T) {
	db, toks := openReadTxs(t, quietOptions(), 2)
	ctx := t.Context()
	r := &db.commit.reads
	inUse, err := r.take(0) // a read in progress
	require.NoError(t, err)
	require.NoError(t, db.Revoke(ctx, toks[0]))
	r.put(inUse, 0)
	require.Equal(t, 0, db.bolt.Stats().OpenTxN, "a transaction from before the Revoke was kept")
	_, err = db.Validate(ctx, toks[0])
	require.ErrorIs(t, err, ErrNotFound)
}

// A kept transaction from before the last write (its put raced the
// write: it read writing and gen before the write began, and stored
// after it ended) is rolled back by the next call, not used.
func TestReadTxs_StaleKeptIsRolledBack(t *testing.T) {
	db, toks := openReadTxs(t, quietOptions(), 2)
	ctx := t.Context()
	r := &db.commit.reads
	stale, err := r.take(0)
	require.NoError(t, err)
	require.NoError(t, db.Revoke(ctx, toks[0]))
	r.slots[3].p.Store(stale) // as the racing put leaves it
	_, err = db.Validate(ctx, toks[0])
	require.ErrorIs(t, err, ErrNotFound, "answered from a transaction older than the Revoke")
	require.Nil(t, r.slots[3].p.Load())
	require.Equal(t, 1, db.bolt.Stats().OpenTxN, "the stale one rolled back, the Validate's own kept")
}

// A put while a write is in progress rolls back: an idle transaction
// would hold bbolt's mmaplock, for which the write's commit waits when it
// grows the file.
func TestReadTxs_PutDuringWriteRollsBack(t *testing.T) {
	db, _ := openReadTxs(t, quietOptions(), 1)
	r := &db.commit.reads
	kept, err := r.take(0)
	require.NoError(t, err)
	r.put(kept, 0)
	require.Equal(t, 1, db.bolt.Stats().OpenTxN)

	inUse, err := r.take(0)
	require.NoError(t, err)
	require.Same(t, kept, inUse)
	r.writeBegin()
	r.put(inUse, 0)
	require.Equal(t, 0, db.bolt.Stats().OpenTxN, "kept while a write is in progress")
	r.writeEnd()

	kept, err = r.take(0)
	require.NoError(t, err)
	r.put(kept, 0)
	r.writeBegin()
	require.Equal(t, 0, db.bolt.Stats().OpenTxN, "a write began with a transaction kept")
	r.writeEnd()
}

// Writes that grow the file past bbolt's mapping (a remap, which waits for
// every open read transaction) go through while calls keep transactions,
// and so does Close.
func TestReadTxs_RemapAndCloseWithKeptTxs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := Open(path, quietOptions())
	require.NoError(t, err)
	ctx := t.Context()
	tok, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		var err error
		for i := range 40 {
			// Each keeps one transaction (the token is read from the
			// file: a Lookup caches nothing it must keep), then a batch
			// grows the file.
			db.DropCleanCache()
			if _, err = db.Lookup(ctx, tok); err != nil {
				break
			}
			reqs := make([]IssueRequest, 500)
			for j := range reqs {
				reqs[j] = IssueRequest{Subject: fmt.Sprintf("u%d-%d", i, j)}
			}
			if _, err = db.IssueBatch(ctx, reqs); err != nil {
				break
			}
		}
		if err == nil {
			db.DropCleanCache()
			_, err = db.Lookup(ctx, tok) // kept at Close
		}
		done <- errors.Join(err, db.Close())
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute): // a deadlock: a kept transaction held the mmaplock
		t.Fatal("writes or Close waited a minute with read transactions kept")
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Greater(t, fi.Size(), int64(4<<20), "the file grew past several remaps")
}

// Validates of tokens other goroutines revoke, issue and validate: a
// token whose Revoke returned before a Validate began is never answered
// valid (the kept transactions see every write ended before the call),
// and every other token is.
func TestReadTxs_RevokedNeverValidAfterConcurrent(t *testing.T) {
	const n = 2000
	o := quietOptions()
	o.CacheSize = 64 // few clean entries: most calls read the file
	db, toks := openReadTxs(t, o, n)
	ctx := t.Context()
	var revoked atomic.Int64 // toks[:revoked] have been revoked
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	callUntilStopped(&wg, errs, stop, 4, 1, func(_ int, rng *rand.Rand) error {
		before := revoked.Load()
		i := int64(rng.IntN(n))
		_, err := db.Lookup(ctx, toks[i])
		after := revoked.Load() // toks[after] may be being revoked
		switch {
		case i < before && !errors.Is(err, ErrNotFound):
			return fmt.Errorf("token %d, revoked before the call: %v", i, err)
		case i > after && err != nil:
			return fmt.Errorf("token %d, not revoked by the call's end: %v", i, err)
		}
		return nil
	})
	wg.Go(func() { // writes that end transactions in use
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := db.Issue(ctx, fmt.Sprintf("other-%d", i)); err != nil {
				errs <- err
				return
			}
		}
	})
	for i := range n - 1 {
		require.NoError(t, db.Revoke(ctx, toks[i]))
		revoked.Store(int64(i + 1))
	}
	close(stop)
	wg.Wait()
	reportErrs(t, errs)
}

// A read-only store writes nothing, so no write empties the slots: its
// Close rolls back the kept transactions itself (bbolt's Close waits for
// every open one).
func TestReadTxs_ReadOnlyCloseWithKeptTx(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := Open(path, quietOptions())
	require.NoError(t, err)
	tok, _, err := db.Issue(t.Context(), "user")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	o := quietOptions()
	o.ReadOnly = true
	ro, err := Open(path, o)
	require.NoError(t, err)
	_, err = ro.Validate(t.Context(), tok)
	require.NoError(t, err)
	require.Equal(t, 1, ro.bolt.Stats().OpenTxN, "kept")
	done := make(chan error, 1)
	go func() { done <- ro.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Close waited a minute for a kept read transaction")
	}
}

// callUntilStopped runs call in a loop in each of goroutines goroutines
// (on wg, each with its index and a random source of its own) until stop
// is closed; an error goes to errs and ends its goroutine.
func callUntilStopped(wg *sync.WaitGroup, errs chan<- error, stop <-chan struct{}, goroutines int, seed uint64, call func(g int, rng *rand.Rand) error) {
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), seed))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := call(g, rng); err != nil {
					errs <- err
					return
				}
			}
		})
	}
}
