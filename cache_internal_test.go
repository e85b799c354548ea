package tokenstore

import (
	"errors"
	"math"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shardHash returns a hash in shard 0, told apart by n.
func shardHash(n int) Hash {
	var h Hash
	h[8], h[9] = byte(n), byte(n>>8)
	return h
}

func testRecord(t0 int64) record {
	return record{id: uuid.Must(uuid.NewV7()), subject: "u", created: t0, lastUsed: t0, policy: Sliding(time.Hour, 0)}
}

// A delete that ends between a miss's read and its insert may have
// deleted what the read returned: lookup reads again, and caches only the
// second read.
func TestCache_Lookup_RetriesAfterDelete(t *testing.T) {
	c := newCache(1024)
	h := shardHash(1)
	rec := testRecord(1000)
	reads := 0
	r, err := c.lookup(h, 2000, true, func() (record, error) {
		reads++
		if reads == 1 { // a Revoke of another token in the shard commits meanwhile
			c.beginDelete(shardHash(2))
			c.endDelete(shardHash(2), true)
		}
		return rec, nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, reads, "read again after the delete")
	assert.False(t, r.hit)
	assert.Equal(t, int64(1000), r.lag, "the use at 2000 is not written yet")

	r, err = c.lookup(h, 2000, true, func() (record, error) { t.Fatal("read on a hit"); return record{}, nil })
	require.NoError(t, err)
	assert.True(t, r.hit, "the second read was cached")

	// A delete that ends with the token gone: the retry reads ErrNotFound.
	h3 := shardHash(3)
	reads = 0
	_, err = c.lookup(h3, 2000, false, func() (record, error) {
		reads++
		if reads == 1 {
			c.beginDelete(h3)
			c.endDelete(h3, true)
			return testRecord(1000), nil
		}
		return record{}, ErrNotFound
	})
	require.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, 2, reads)
}

// While a delete of h is in flight, lookups read the file and cache
// nothing, even a hit: the entry is not trusted.
func TestCache_Lookup_NothingCachedDuringDelete(t *testing.T) {
	c := newCache(1024)
	h := shardHash(1)
	rec := testRecord(1000)
	read := func() (record, error) { return rec, nil }
	_, err := c.lookup(h, 1500, false, read)
	require.NoError(t, err)

	c.beginDelete(h)
	reads := 0
	for range 3 {
		r, err := c.lookup(h, 1500, true, func() (record, error) { reads++; return rec, nil })
		require.NoError(t, err)
		assert.False(t, r.hit)
		assert.Equal(t, int64(500), r.lag, "a Validate that writes its use writes it after the delete: it may not commit")
	}
	assert.Equal(t, 3, reads, "the file decides while the delete is in flight")
	c.endDelete(h, true)
	s := c.shard(h)
	s.mu.Lock()
	_, cached := s.m[h]
	s.mu.Unlock()
	assert.False(t, cached, "endDelete drops the entry")

	_, err = c.lookup(h, 1500, false, func() (record, error) { return record{}, ErrNotFound })
	require.ErrorIs(t, err, ErrNotFound)
}

// A full shard evicts clean entries only: a use not yet written stays in
// memory until it is, then may go.
func TestCache_Eviction_KeepsUnwrittenUses(t *testing.T) {
	c := newCache(cacheShards) // one clean entry per shard
	dirty := shardHash(1)
	rec := testRecord(1000)
	_, err := c.lookup(dirty, 5000, true, func() (record, error) { return rec, nil })
	require.NoError(t, err)
	for n := 2; n < 200; n++ {
		_, err := c.lookup(shardHash(n), 5000, false, func() (record, error) { return testRecord(1000), nil })
		require.NoError(t, err)
	}
	p, ok := c.pending(dirty)
	require.True(t, ok)
	assert.Equal(t, int64(5000), p.used, "the unwritten use survived 198 inserts")
	assert.Equal(t, rec.id, uuid.UUID(p.id))
	assert.Len(t, c.dirty(), 1)
	s := c.shard(dirty)
	s.mu.Lock()
	size := len(s.m)
	s.mu.Unlock()
	assert.LessOrEqual(t, size, 3, "clean entries stay within the limit")

	c.persisted(dirty, 5000)
	assert.Empty(t, c.dirty())
	// Eviction picks at random: insert until it goes (each insert evicts
	// one of at most three entries, so 1,000 leave it a 2^-500 chance).
	gone := false
	for n := 200; n < 1200 && !gone; n++ {
		_, err := c.lookup(shardHash(n), 5000, false, func() (record, error) { return testRecord(1000), nil })
		require.NoError(t, err)
		s.mu.Lock()
		_, kept := s.m[dirty]
		s.mu.Unlock()
		gone = !kept
	}
	assert.True(t, gone, "written, it is evicted like any clean entry")
}

// An error of the read is the lookup's, and nothing is cached.
func TestCache_Lookup_ReadError(t *testing.T) {
	c := newCache(1024)
	boom := errors.New("boom")
	_, err := c.lookup(shardHash(1), 1, true, func() (record, error) { return record{}, boom })
	require.ErrorIs(t, err, boom)
	assert.Empty(t, c.dirty())
}

// persistedAll marks each use of a flush transaction written, shard by
// shard: a use written is clean, a later use made meanwhile stays pending.
func TestCache_PersistedAll(t *testing.T) {
	c := newCache(1 << 12)
	var ts []touch
	shards := map[int]bool{}
	for n := range 500 {
		var h Hash
		h[len(h)-8], h[len(h)-7] = byte(n), byte(n>>8) // spread over the shards (shardIndex)
		shards[c.shardIndex(h)] = true
		rec := testRecord(1000)
		_, err := c.lookup(h, 5000, true, func() (record, error) { return rec, nil })
		require.NoError(t, err)
		ts = append(ts, touch{h, rec.id, 5000})
	}
	require.Len(t, c.dirty(), 500)
	require.Len(t, shards, cacheShards)
	later := ts[7].h
	_, err := c.lookup(later, 6000, true, nil) // cached: read is not called
	require.NoError(t, err)
	var scratch []touch
	c.persistedAll(ts[:250], &scratch)
	c.persistedAll(ts[250:], &scratch)
	left := c.dirty()
	require.Len(t, left, 1, "only the use made after the flush read it")
	assert.Equal(t, later, left[0].h)
	assert.Equal(t, int64(6000), left[0].used)
	assert.Equal(t, int64(6000), c.used(later))
}

// The sweep's batched form: while beginDeleteAll's tokens are being
// deleted nothing of them is cached and every lookup reads the file;
// endDeleteAll drops their entries, spares the others, and makes a read
// that crossed it read again (gen), as endDelete does. More tokens than
// deleteBatch in a shard exercise the batches.
func TestCache_DeleteAll(t *testing.T) {
	c := newCache(1 << 16)
	var hs []Hash
	for n := range 2*deleteBatch + 3 {
		hs = append(hs, shardHash(n)) // all in shard 0
	}
	hs = append(hs, Hash{1}, Hash{2, 0, 0, 0, 0, 0, 0, 0, 7}) // other shards
	keep := shardHash(5000)
	for _, h := range append(slices.Clone(hs), keep) {
		_, err := c.lookup(h, 2000, false, func() (record, error) { return testRecord(1000), nil })
		require.NoError(t, err)
	}
	c.beginDeleteAll(hs)
	for _, h := range hs {
		reads := 0
		r, err := c.lookup(h, 2000, false, func() (record, error) { reads++; return testRecord(1000), nil })
		require.NoError(t, err)
		assert.False(t, r.hit, "a token being deleted is read from the file")
		assert.Equal(t, 1, reads)
	}
	// A miss whose read crosses the end of the deletes reads again.
	reads := 0
	h := shardHash(6000)
	_, err := c.lookup(h, 2000, false, func() (record, error) {
		if reads++; reads == 1 {
			c.endDeleteAll(hs, true)
		}
		return testRecord(1000), nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, reads, "read again after endDeleteAll")
	for _, h := range hs {
		s := c.shard(h)
		s.mu.Lock()
		_, cached := s.m[h]
		deleting := s.deleting[h]
		s.mu.Unlock()
		assert.False(t, cached, "endDeleteAll drops the entry")
		assert.Zero(t, deleting)
	}
	r, err := c.lookup(keep, 2000, false, func() (record, error) { t.Fatal("read on a hit"); return record{}, nil })
	require.NoError(t, err)
	assert.True(t, r.hit, "a token not deleted stays cached")
}

// The pending list against the shard's map, over random uses, writes,
// deletes and evictions: npending is the count of entries of m with a use
// not yet written, every such entry is listed once, dirty() returns each
// exactly once with its latest use, and the list stays within twice the
// most unwritten entries the shard held plus pendingSlack, however many
// steps, whether or not a flush runs.
func TestCache_PendingListMatchesMap(t *testing.T) {
	for _, flushes := range []bool{true, false} {
		c := newCache(8 * cacheShards) // 8 clean entries per shard: evictions happen
		s := &c.shards[0]
		rng := mrand.New(mrand.NewPCG(11, 12))
		now := int64(1000)
		most := 0
		for step := range 20_000 {
			h := shardHash(rng.IntN(64))
			switch op := rng.IntN(10); {
			case op < 6:
				now++
				_, err := c.lookup(h, now, true, func() (record, error) { return testRecord(500), nil })
				require.NoError(t, err)
			case op < 8:
				c.persisted(h, now)
			case op < 9:
				c.beginDelete(h)
				c.endDelete(h, rng.IntN(2) == 0)
			default:
				if flushes {
					got := map[Hash]int64{}
					for _, tc := range c.dirty() {
						_, twice := got[tc.h]
						require.False(t, twice, "step %d: listed twice", step)
						got[tc.h] = tc.used
					}
					want := map[Hash]int64{}
					for k, e := range s.m {
						if e.dirty() {
							want[k] = e.used
						}
					}
					require.Equal(t, want, got, "step %d", step)
				}
			}
			n, listed := 0, 0
			for _, e := range s.m {
				if e.dirty() {
					n++
					require.True(t, e.listed, "step %d: a use not yet written is not listed", step)
				}
			}
			for p := range s.pending.all() {
				if p.e.dirty() && s.m[p.h] == p.e {
					listed++
				}
			}
			require.Equal(t, n, s.npending, "step %d", step)
			require.Equal(t, n, listed, "step %d", step)
			most = max(most, n)
			require.LessOrEqual(t, s.pending.len(), 2*most+pendingSlack+1, "step %d", step)
		}
	}
}

// used returns the latest in-memory use of h, or math.MinInt64 when none
// is held (for the tests).
func (c *cache) used(h Hash) int64 {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[h]; e != nil {
		return e.used
	}
	return math.MinInt64
}

// TestCache_PendingListMatchesMap over the paths the sweep added as
// well: the sweep's mark (beginSweepAll, a token alive by its use left
// out) and its end (endDeleteAll, committed or not), uses and Lookups
// while marked or while a delete is in flight, and the hold on clean
// entries (holdClean), for a cache that keeps no clean entries, one per
// shard, and eight.
func TestCache_PendingListMatchesMapWithSweeps(t *testing.T) {
	for _, size := range []int{-1, 1, 8 * cacheShards} {
		c := newCache(size)
		s := &c.shards[0]
		rng := mrand.New(mrand.NewPCG(uint64(size+2), 13))
		now := int64(1000)
		most := 0
		var marked []Hash // the sweep's marks in flight
		deleting := map[Hash]int{}
		for step := range 30_000 {
			h := shardHash(rng.IntN(64))
			switch op := rng.IntN(20); {
			case op < 9:
				now++
				_, err := c.lookup(h, now, op < 7, func() (record, error) { return testRecord(500), nil })
				require.NoError(t, err)
			case op < 12:
				c.persisted(h, now)
			case op < 13:
				c.beginDelete(h)
				deleting[h]++
			case op < 14:
				for k := range deleting {
					c.endDelete(k, rng.IntN(2) == 0)
					if deleting[k]--; deleting[k] == 0 {
						delete(deleting, k)
					}
					break
				}
			case op < 15 && marked == nil:
				hs := []Hash{h, shardHash(rng.IntN(64))}
				sweepAt := now + 2*time.Hour.Milliseconds()
				if rng.IntN(2) == 0 {
					sweepAt = 0 // every one alive by a use is left out
				}
				c.holdClean(true)
				alive := c.beginSweepAll(hs, sweepAt)
				c.holdClean(false)
				for _, k := range hs {
					if !slices.ContainsFunc(alive, func(a sweptAlive) bool { return a.h == k }) && !slices.Contains(marked, k) {
						marked = append(marked, k)
					}
				}
			case op < 16 && marked != nil:
				c.endDeleteAll(marked, rng.IntN(2) == 0)
				marked = nil
			case op < 17:
				c.holdClean(rng.IntN(2) == 0)
			case op < 18:
				got := map[Hash]int64{}
				for _, tc := range c.dirty() {
					_, twice := got[tc.h]
					require.False(t, twice, "size %d step %d: listed twice", size, step)
					got[tc.h] = tc.used
				}
				want := map[Hash]int64{}
				for k, e := range s.m {
					if e.dirty() {
						want[k] = e.used
					}
				}
				for k, e := range s.kept { // to be written too: the delete they wait for may not commit
					if e.dirty() {
						want[k] = e.used
					}
				}
				require.Equal(t, want, got, "size %d step %d", size, step)
			}
			n, listed := 0, 0
			for _, e := range s.m {
				if e.dirty() {
					n++
					require.True(t, e.listed, "size %d step %d: a use not yet written is not listed", size, step)
				}
			}
			for p := range s.pending.all() {
				if p.e.dirty() && s.m[p.h] == p.e {
					listed++
				}
			}
			require.Equal(t, n, s.npending, "size %d step %d", size, step)
			require.Equal(t, n, listed, "size %d step %d", size, step)
			most = max(most, n)
			require.LessOrEqual(t, s.pending.len(), 2*most+pendingSlack+1, "size %d step %d", size, step)
			for k := range s.kept { // clean once written (persisted): restoreLocked then caches nothing
				require.Positive(t, s.deleting[k], "size %d step %d: a use kept aside with no delete in flight", size, step)
				require.Nil(t, s.m[k], "size %d step %d: kept aside and cached", size, step)
			}
		}
	}
}

// Shards fill whole pairs of cache lines (shard's padding), whatever
// fields shardState gains.
func TestCache_ShardsFillCacheLines(t *testing.T) {
	assert.Zero(t, unsafe.Sizeof(shard{})%shardLine, "shard is %d bytes", unsafe.Sizeof(shard{}))
}

// No 128-byte span (shardLine: a pair of cache lines) holds the state of
// two neighbouring shards, wherever the heap puts the cache: it does not
// align it to a span (newCache's shards began 8, 56, 72 or 88 bytes into
// one, from run to run), so sizes that are whole spans
// (TestCache_ShardsFillCacheLines) keep the states apart only when the
// padding between two is a whole span too. Checked for every 8-byte
// offset, and on caches as newCache makes them.
func TestCache_ShardStatesShareNoSpan(t *testing.T) {
	state, stride := unsafe.Sizeof(shardState{}), unsafe.Sizeof(shard{})
	for base := uintptr(0); base < shardLine; base += 8 {
		end, next := base+state-1, base+stride
		assert.NotEqual(t, end/shardLine, next/shardLine, "shards at %d bytes into a span: two states (%d bytes, %d apart) share one", base, state, stride)
	}
	for range 8 {
		c := newCache(defaultCacheSize)
		for i := range len(c.shards) - 1 {
			end := uintptr(unsafe.Pointer(&c.shards[i])) + state - 1
			next := uintptr(unsafe.Pointer(&c.shards[i+1]))
			require.NotEqual(t, end/shardLine, next/shardLine, "newCache: shards %d and %d share a span (shard %d at %d bytes into one)",
				i, i+1, i, uintptr(unsafe.Pointer(&c.shards[i]))%shardLine)
		}
	}
}

// pendingList.keep compacts in place across blocks: the refs kept, in
// their order, whatever the pattern and the number of blocks, and the
// refs dropped cleared from every block's array.
func TestPendingList_Keep(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for trial := range 200 {
		var l pendingList
		var want []*entry
		n := rng.IntN(4 * pendingBlock)
		all := make([]*entry, n)
		for i := range all {
			all[i] = &entry{used: int64(i)}
			l.add(pendingRef{e: all[i]})
		}
		keep := rng.IntN(4)
		l.keep(func(p pendingRef) bool {
			if int(p.e.used)%4 > keep {
				return false
			}
			want = append(want, p.e)
			return true
		})
		var got []*entry
		for p := range l.all() {
			got = append(got, p.e)
		}
		require.Equal(t, want, got, "trial %d", trial)
		require.Equal(t, len(want), l.len(), "trial %d", trial)
		for i, b := range l.blocks {
			for _, p := range b[len(b):cap(b)] {
				require.Nil(t, p.e, "trial %d block %d: a dropped ref kept", trial, i)
			}
		}
		l.add(pendingRef{e: &entry{used: -1}}) // appends after the kept ones
		last := pendingRef{}
		for p := range l.all() {
			last = p
		}
		require.Equal(t, int64(-1), last.e.used, "trial %d", trial)
	}
}

// The use kept aside for a token not cached (shard.kept) waits for the
// last of the deletes in flight: it is cached, as a use not yet written,
// only when the last ends without deleting the record, and dropped as soon
// as one of them deletes it. The sweep's mark is one of those deletes, and
// sees the use as it sees a cached one: a token it makes alive past the
// sweep's clock is left out.
func TestCache_UseKeptUntilLastDeleteEnds(t *testing.T) {
	const hour = int64(time.Hour / time.Millisecond)
	h := shardHash(1)
	rec := testRecord(1000)
	read := func() (record, error) { return rec, nil }
	cached := func(c *cache) (used int64, npending, listed int, kept bool) {
		s := c.shard(h)
		s.mu.Lock()
		defer s.mu.Unlock()
		for p := range s.pending.all() {
			if p.h == h && s.m[h] == p.e {
				listed++
			}
		}
		_, kept = s.kept[h]
		used = math.MinInt64
		if e := s.m[h]; e != nil {
			used = e.used
		}
		return used, s.npending, listed, kept
	}
	validate := func(t *testing.T, c *cache, at int64) {
		t.Helper()
		r, err := c.lookup(h, at, true, read)
		require.NoError(t, err)
		require.False(t, r.expired)
		assert.Equal(t, max(at, 2000)-rec.lastUsed, r.lag, "written after the deletes by a Validate that writes its use")
	}

	t.Run("two deletes that fail", func(t *testing.T) {
		c := newCache(1024)
		c.beginDelete(h)
		c.beginDelete(h)
		validate(t, c, 2000)
		validate(t, c, 1500) // a clock set back: the later use stays
		c.endDelete(h, false)
		used, _, _, kept := cached(c)
		assert.Equal(t, int64(math.MinInt64), used, "not cached while a delete is in flight")
		assert.True(t, kept)
		c.endDelete(h, false)
		used, npending, listed, kept := cached(c)
		assert.Equal(t, int64(2000), used)
		assert.Equal(t, 1, npending)
		assert.Equal(t, 1, listed)
		assert.False(t, kept)
		assert.Equal(t, []touch{{h, rec.id, 2000}}, c.dirty())
	})

	t.Run("a later Validate counts the kept use", func(t *testing.T) {
		c := newCache(1024)
		c.beginDelete(h)
		validate(t, c, 1000+hour-1) // slides the token to 1000+2*hour-1
		r, err := c.lookup(h, 1000+hour+1, false, read)
		require.NoError(t, err)
		assert.False(t, r.expired, "alive by the use answered before")
		c.endDelete(h, false)
		assert.Equal(t, 1000+hour-1, c.used(h))
	})

	t.Run("one of two commits", func(t *testing.T) {
		c := newCache(1024)
		c.beginDelete(h)
		c.beginDelete(h)
		validate(t, c, 2000)
		c.endDelete(h, true)
		c.endDelete(h, false)
		used, npending, _, kept := cached(c)
		assert.Equal(t, int64(math.MinInt64), used, "the use went with the record")
		assert.Zero(t, npending)
		assert.False(t, kept)
	})

	t.Run("the sweep's mark", func(t *testing.T) {
		c := newCache(1024)
		c.beginDelete(h) // a Revoke
		validate(t, c, 1000+hour/2)
		alive := c.beginSweepAll([]Hash{h}, 1000+hour+1)
		assert.Equal(t, []sweptAlive{{h, 1000 + hour/2, 1000 + hour/2 + hour}}, alive, "alive by the kept use: left out")

		c.beginDeleteAll([]Hash{h}) // a cut sweep's, whatever the uses
		c.endDelete(h, false)       // the Revoke failed
		_, _, _, kept := cached(c)
		assert.True(t, kept, "the sweep's mark is in flight")
		c.endDeleteAll([]Hash{h}, false) // cut short again
		used, npending, listed, kept := cached(c)
		assert.Equal(t, 1000+hour/2, used)
		assert.Equal(t, 1, npending)
		assert.Equal(t, 1, listed)
		assert.False(t, kept)

		c = newCache(1024)
		c.beginDelete(h)
		validate(t, c, 2000)
		c.beginDeleteAll([]Hash{h})
		c.endDelete(h, false)
		c.endDeleteAll([]Hash{h}, true) // the sweep deleted it
		used, npending, _, kept = cached(c)
		assert.Equal(t, int64(math.MinInt64), used)
		assert.Zero(t, npending)
		assert.False(t, kept)
	})
}

// all yields every ref of l, in the order added (for the tests).
func (l *pendingList) all() func(yield func(pendingRef) bool) {
	return func(yield func(pendingRef) bool) {
		for _, b := range l.blocks {
			for _, p := range b {
				if !yield(p) {
					return
				}
			}
		}
	}
}
