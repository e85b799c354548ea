package tokenstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Every kind of delete, seen by Validates and Lookups that began after it
// returned, from other goroutines, while uses are flushed and the clean
// cache dropped (so that most calls read the file in kept transactions):
// Revoke, RevokeID, RevokeSubject, RevokeFamily and the family revoked by
// a reuse after a Rotate. A token whose delete returned before a call
// began is never answered valid; a token no delete has reached yet always
// is.
func TestReadTxs_EveryDeleteSeenByLaterCalls(t *testing.T) {
	for _, size := range []int{64, -1} { // few clean entries; none
		t.Run(fmt.Sprintf("CacheSize=%d", size), func(t *testing.T) { everyDeleteSeenByLaterCalls(t, size) })
	}
}

func everyDeleteSeenByLaterCalls(t *testing.T, cacheSize int) {
	const n = 600 // victims, 5 kinds of delete
	o := &Options{SweepInterval: -1, TouchInterval: 2 * time.Millisecond, CacheSize: cacheSize}
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
	callUntilStopped(&wg, errs, stop, 4, 7, func(_ int, rng *rand.Rand) error {
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
			return fmt.Errorf("victim %d (kind %d): valid after its delete returned", i, i%5)
		case !reached && err != nil:
			return fmt.Errorf("victim %d (kind %d), not deleted: %w", i, i%5, err)
		}
		return nil
	})
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
	reportErrs(t, errs)
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
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		started := callUntilClosed(&wg, errs, 6, 2000, uint64(round), func(g int, rng *rand.Rand) (err error) {
			if g%2 == 0 {
				_, err = db.Validate(ctx, toks[rng.IntN(len(toks))])
			} else {
				db.DropCleanCache()
				_, err = db.Lookup(ctx, toks[rng.IntN(len(toks))])
			}
			return err
		})
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
		waitStarted(started, &wg)
		closeDuringCalls(t, db, &wg, errs)
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
	callUntilStopped(&wg, errs, stop, 4, 3, func(_ int, rng *rand.Rand) error {
		db.DropCleanCache()
		_, err := db.Lookup(ctx, toks[rng.IntN(len(toks))])
		return err
	})
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
	reportErrs(t, errs)
}

// tokenLeaves stores 400 tokens in one transaction (so that the file
// holds no stale copy of a leaf), closes the store and returns its path,
// the tokens, bbolt's page size, the file, and the tokens bucket's leaves
// read from it (leaf pages, flag 0x02, whose keys are all 32 bytes long)
// in key order.
func tokenLeaves(t *testing.T) (path string, issued []Issued, pageSize int, b []byte, leaves []tokenLeaf) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "t.db")
	db, err := Open(path, quietOptions())
	require.NoError(t, err)
	reqs := make([]IssueRequest, 400)
	for i := range reqs {
		reqs[i] = IssueRequest{Subject: fmt.Sprintf("user-%d", i)}
	}
	issued, err = db.IssueBatch(t.Context(), reqs)
	require.NoError(t, err)
	pageSize = db.bolt.Info().PageSize
	require.NoError(t, db.Close())
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	for id := range len(b) / pageSize {
		p := b[id*pageSize : (id+1)*pageSize]
		count := int(binary.LittleEndian.Uint16(p[10:]))
		if binary.LittleEndian.Uint16(p[8:]) != 0x02 || count < 2 {
			continue
		}
		key := func(i int) []byte {
			e := p[16+16*i:]
			pos, ksize := int(binary.LittleEndian.Uint32(e[4:])), int(binary.LittleEndian.Uint32(e[8:]))
			if ksize != len(Hash{}) || 16+16*i+pos+ksize > len(p) {
				return nil
			}
			return e[pos : pos+ksize]
		}
		l := tokenLeaf{id: id, first: key(0), second: key(1), last: key(count - 1)}
		if l.first != nil && l.second != nil && l.last != nil {
			leaves = append(leaves, l)
		}
	}
	slices.SortFunc(leaves, func(a, b tokenLeaf) int { return bytes.Compare(a.first, b.first) })
	require.GreaterOrEqual(t, len(leaves), 3, "the tokens bucket's leaves")
	return path, issued, pageSize, b, leaves
}

type tokenLeaf struct {
	id                  int
	first, second, last []byte
}

// damageOpen writes v at off in the file of an open store (bbolt maps it
// shared, and Open's own check would refuse some damage).
func damageOpen(t *testing.T, path string, off int, v []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(v, int64(off))
	require.NoError(t, errors.Join(err, f.Close()))
}

// A token the file does not hold, whose place in the tokens bucket is
// past the last key of a leaf page, is not found: it is answered
// ErrNotFound as bbolt's Bucket.Get answers it, without reading the next
// leaf. A damaged page costs its own tokens, not an unknown token's
// answer (a revoked token's, a forged one's) beside it.
func TestReadTxs_MissPastLeafEndReadsNoOtherPage(t *testing.T) {
	path, _, pageSize, _, leaves := tokenLeaves(t)
	prev, next := leaves[0], leaves[1]
	var h Hash // after prev's last key, before next's first
	copy(h[:], prev.last)
	for i := len(h) - 1; i >= 0; i-- {
		if h[i]++; h[i] != 0 {
			break
		}
	}
	require.Negative(t, bytes.Compare(h[:], next.first))

	db, err := Open(path, quietOptions())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	// next's page header names another page: bbolt refuses to read it.
	damageOpen(t, path, next.id*pageSize, binary.LittleEndian.AppendUint64(nil, uint64(next.id)+1000))

	_, err = db.read(h)
	require.ErrorIs(t, err, ErrNotFound)
	require.NotErrorIs(t, err, ErrCorrupt)
	_, err = db.readForUse(h, db.nowMs())
	require.ErrorIs(t, err, ErrNotFound)
	require.NotErrorIs(t, err, ErrCorrupt)
	require.Equal(t, 1, db.bolt.Stats().OpenTxN, "the misses' transaction, kept")
	// A token of the damaged page itself is ErrCorrupt.
	_, err = db.read(Hash(next.first))
	require.ErrorIs(t, err, ErrCorrupt)
	require.Zero(t, db.bolt.Stats().OpenTxN, "a transaction a panic went through was kept")
	// Tokens elsewhere are read, in a kept transaction.
	_, err = db.read(Hash(prev.last))
	require.NoError(t, err)
	require.Equal(t, 1, db.bolt.Stats().OpenTxN)
}

// A token that Validate answers valid is one Revoke deletes, also in a
// damaged tree: a branch key raised past the first key of its leaf, so
// that a search for that key (Bucket.Get, and every write's getRecord)
// lands past the end of the leaf before. Validate and Lookup must miss
// it too (failing closed, as the writes do): had their read walked on
// to the next leaf (Cursor.Seek), they answered valid a token that
// Revoke, RevokeID and RevokeSubject answer ErrNotFound, and so could
// never revoke.
func TestReadTxs_ValidateAgreesWithRevokeOnDamagedBranch(t *testing.T) {
	path, issued, pageSize, b, leaves := tokenLeaves(t)
	next := leaves[1]
	db, err := Open(path, quietOptions())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	tok := ""
	for _, is := range issued {
		if h := mustParse(t, db, is.Token); bytes.Equal(h[:], next.first) {
			tok = is.Token
		}
	}
	require.NotEmpty(t, tok, "next's first key is an issued token's")
	// The branch element of next, in a branch page (flag 0x01): its key
	// raised by one in its last byte, still below next's second key.
	off := -1
	for id := range len(b) / pageSize {
		p := b[id*pageSize : (id+1)*pageSize]
		if binary.LittleEndian.Uint16(p[8:]) != 0x01 {
			continue
		}
		for i := range int(binary.LittleEndian.Uint16(p[10:])) {
			e := p[16+16*i:]
			pos, ksize := int(binary.LittleEndian.Uint32(e[0:])), int(binary.LittleEndian.Uint32(e[4:]))
			if binary.LittleEndian.Uint64(e[8:]) == uint64(next.id) && ksize == len(Hash{}) && bytes.Equal(e[pos:pos+ksize], next.first) {
				off = id*pageSize + 16 + 16*i + pos + ksize - 1
			}
		}
	}
	require.Positive(t, off, "next's branch element")
	raised := next.first[len(next.first)-1] + 1
	require.NotZero(t, raised)
	require.Negative(t, bytes.Compare(append(bytes.Clone(next.first[:len(next.first)-1]), raised), next.second))

	damageOpen(t, path, off, []byte{raised})
	ctx := t.Context()

	_, verr := db.Validate(ctx, tok)
	_, lerr := db.Lookup(ctx, tok)
	rerr := db.Revoke(ctx, tok)
	if verr == nil || lerr == nil {
		require.NoError(t, rerr, "a token that validates cannot be revoked")
	}
	_, verr = db.Validate(ctx, tok)
	require.Error(t, verr, "valid after Revoke returned")
	_, lerr = db.Lookup(ctx, tok)
	require.Error(t, lerr, "valid after Revoke returned")
}

// The slot a call's search starts from spreads concurrent calls over the
// slots, as readTxs.view says: a hash's first bytes are its token's issue
// time (Hash), the same for every token of years, so they pick one slot.
func TestReadTxs_HintsSpreadOverSlots(t *testing.T) {
	db, toks := openReadTxs(t, quietOptions(), 64) // one transaction, one millisecond or few
	slots := map[int]bool{}
	for _, tok := range toks {
		slots[int(readTxHint(mustParse(t, db, tok)))%readTxSlots] = true
	}
	require.Greater(t, len(slots), readTxSlots/2, "slots the searches of 64 tokens start from")
}

// A write that fails on a damaged file keeps bbolt's writer lock (the
// committer is wedged): Validates and Lookups still read, in kept
// transactions, and Close returns, rolling them back, instead of waiting.
func TestReadTxs_WedgedThenClose(t *testing.T) {
	path, issued, pageSize, _, leaves := tokenLeaves(t)
	db, err := Open(path, quietOptions())
	require.NoError(t, err)
	damageOpen(t, path, leaves[1].id*pageSize, binary.LittleEndian.AppendUint64(nil, uint64(leaves[1].id)+1000))
	err = db.commit.update(func(*bolt.Tx) error { return errors.New("a write that fails") })
	require.ErrorIs(t, err, ErrCorrupt)
	require.True(t, db.commit.wedged.Load())

	ctx := t.Context()
	valid := 0
	for _, is := range issued {
		if _, err := db.Validate(ctx, is.Token); err == nil {
			valid++
		}
		db.DropCleanCache()
		_, _ = db.Lookup(ctx, is.Token)
	}
	require.Greater(t, valid, len(issued)/2)
	require.Positive(t, db.bolt.Stats().OpenTxN, "kept")
	done := make(chan error, 1)
	go func() { done <- db.Close() }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrCorrupt)
	case <-time.After(time.Minute):
		t.Fatal("Close of a wedged store waited a minute")
	}
	require.Zero(t, db.bolt.Stats().OpenTxN, "a kept transaction left open")
}

// A read-only store's Close while goroutines Validate and Lookup uncached
// tokens: no write ever empties the slots, so Close's own drain is what
// lets bbolt's Close return.
func TestReadTxs_ReadOnlyCloseDuringCalls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := Open(path, quietOptions())
	require.NoError(t, err)
	reqs := make([]IssueRequest, 300)
	for i := range reqs {
		reqs[i] = IssueRequest{Subject: fmt.Sprintf("user-%d", i)}
	}
	issued, err := db.IssueBatch(t.Context(), reqs)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	for round := range 5 {
		o := quietOptions()
		o.ReadOnly, o.CacheSize = true, -1
		ro, err := Open(path, o)
		require.NoError(t, err)
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		started := callUntilClosed(&wg, errs, 4, 1000, uint64(round), func(g int, rng *rand.Rand) (err error) {
			tok := issued[rng.IntN(len(issued))].Token
			if g%2 == 0 {
				_, err = ro.Validate(ctx, tok)
			} else {
				_, err = ro.Lookup(ctx, tok)
			}
			return err
		})
		waitStarted(started, &wg)
		closeDuringCalls(t, ro, &wg, errs)
	}
}

// A token issued (or rotated in) before a call began is found by it,
// though the call's transaction is kept from before the Issue.
func TestReadTxs_IssuedSeenByLaterCalls(t *testing.T) {
	db, toks := openReadTxs(t, quietOptions(), 1)
	ctx := t.Context()
	for i := range 200 {
		db.DropCleanCache()
		_, err := db.Lookup(ctx, toks[0]) // keeps a transaction
		require.NoError(t, err)
		tok, _, err := db.Issue(ctx, fmt.Sprintf("u%d", i))
		require.NoError(t, err)
		if i%2 == 1 {
			tok, _, err = db.Rotate(ctx, tok)
			require.NoError(t, err)
		}
		db.DropCleanCache()
		_, err = db.Lookup(ctx, tok)
		require.NoError(t, err, "round %d", i)
		_, err = db.Validate(ctx, tok)
		require.NoError(t, err, "round %d", i)
	}
}

// closeDuringCalls closes db while the calls of wg run, and fails unless
// Close and every call return within a minute (a kept transaction, or one
// in use, would make bbolt's Close wait for ever), leaving no read
// transaction open; it then reports the calls' errors.
func closeDuringCalls(t *testing.T, db *DB, wg *sync.WaitGroup, errs chan error) {
	t.Helper()
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
		t.Fatal("Close or calls still running after a minute")
	}
	reportErrs(t, errs)
	require.Zero(t, db.bolt.Stats().OpenTxN)
}

// reportErrs closes errs, whose senders have all returned, and fails the
// test with each error it holds.
func reportErrs(t *testing.T, errs chan error) {
	t.Helper()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// waitStarted returns once started is closed, or once every call of wg
// has returned early (with an error closeDuringCalls reports).
func waitStarted(started <-chan struct{}, wg *sync.WaitGroup) {
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-started:
	case <-ended:
	}
}

// callUntilClosed runs call in a loop in each of goroutines goroutines
// (on wg, each with its index and a random source of its own) until it
// answers ErrClosed; any other error goes to errs and ends its goroutine.
// The channel it returns is closed at the nth call in all, so that a
// Close after it races the calls wherever they are.
func callUntilClosed(wg *sync.WaitGroup, errs chan<- error, goroutines int, n int64, seed uint64, call func(g int, rng *rand.Rand) error) <-chan struct{} {
	var calls atomic.Int64
	started := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), seed))
			for {
				err := call(g, rng)
				if calls.Add(1) == n {
					close(started)
				}
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
	return started
}
