package tokenstore

import (
	"encoding/binary"
	"sync"
)

// cache holds decoded records of recently checked tokens and, for each, the
// latest use seen in memory. It is what lets Validate slide a token without
// a write: the use is recorded here and reaches the file later (see
// sweeper.go), or at once when the stored use is older than TouchInterval.
//
// Coherence: a record changes on disk only by a write that either finds
// its entry here (touches update entry.rec.lastUsed after commit) or
// deletes it (revoke, rotate, sweep). A delete calls beginDelete inside its
// transaction, before the commit, and endDelete after the transaction has
// ended: while a delete is in flight, readers of that token go to the file
// and cache nothing, so no one can be answered from memory after the
// delete is committed (another call may already have seen it: a Revoke
// answering ErrNotFound, a List without the token). endDelete then drops
// the entry. A reader that missed reads the file outside the lock, so it
// may hold a record that a concurrent delete has just removed; shard.gen,
// bumped by every endDelete, tells it to retry instead of
// caching a dead record.
type cache struct {
	shards [cacheShards]shard
	limit  int // clean entries kept per shard; dirty ones are kept regardless
}

const cacheShards = 64

type shard struct {
	mu       sync.Mutex
	m        map[Hash]*entry
	deleting map[Hash]int // deletes in flight, by token: see beginDelete
	gen      uint64
	limit    int      // the cache's limit, kept here so shard methods need no cache
	_        [24]byte // keep shards on separate cache lines
}

type entry struct {
	rec  record // rec.lastUsed is the use as persisted
	used int64  // latest use known, >= rec.lastUsed
}

func (e *entry) dirty() bool { return e.used > e.rec.lastUsed }

func newCache(size int) *cache {
	c := &cache{limit: max(size, 0) / cacheShards}
	if size > 0 && c.limit == 0 {
		c.limit = 1
	}
	for i := range c.shards {
		c.shards[i].m = make(map[Hash]*entry)
		c.shards[i].deleting = make(map[Hash]int)
		c.shards[i].limit = c.limit
	}
	return c
}

func (c *cache) shard(h Hash) *shard {
	return &c.shards[binary.LittleEndian.Uint64(h[:8])%cacheShards]
}

// evictProbes bounds the entries insertLocked looks at to find a clean one
// to evict. Unbounded, a shard full of uses not yet written (every entry
// dirty until the next flush) made each insert walk the whole shard: on
// 1M tokens, uniform Validate of 500k of them took 38 µs/op at a 37% hit
// rate. When the probes find none, the shard grows past its limit (dirty
// entries are kept regardless), and later inserts shrink it back.
const evictProbes = 8

// insertLocked adds e, first evicting up to two clean entries when the
// shard is full (two, so that a shard over its limit shrinks back).
func (s *shard) insertLocked(h Hash, e *entry) {
	for range 2 {
		if len(s.m) < s.limit {
			break
		}
		probes := 0
		for k, old := range s.m { // map order is random: a cheap random eviction
			if !old.dirty() {
				delete(s.m, k)
				break
			}
			if probes++; probes == evictProbes {
				break
			}
		}
	}
	s.m[h] = e
}

// releaseLocked drops e when the cache keeps no clean entries.
func (s *shard) releaseLocked(h Hash, e *entry) {
	if s.limit == 0 && !e.dirty() {
		delete(s.m, h)
	}
}

// beginDelete announces that a transaction is about to delete h's record.
// Until the matching endDelete, Validate and Lookup of h read the file and
// cache nothing. Call it inside the transaction, before it commits; calls
// nest.
func (c *cache) beginDelete(h Hash) {
	s := c.shard(h)
	s.mu.Lock()
	s.deleting[h]++
	s.mu.Unlock()
}

// endDelete ends one beginDelete of h, after its transaction has ended
// (committed or not), and forgets h's entry.
func (c *cache) endDelete(h Hash) {
	s := c.shard(h)
	s.mu.Lock()
	if s.deleting[h]--; s.deleting[h] <= 0 {
		delete(s.deleting, h)
	}
	delete(s.m, h)
	s.gen++
	s.mu.Unlock()
}

// used returns the latest in-memory use of h, or 0.
func (c *cache) used(h Hash) int64 {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[h]; e != nil {
		return e.used
	}
	return 0
}

// lastUse is h's latest use: the one in memory when it is later than the
// one stored in rec.
func (c *cache) lastUse(h Hash, rec *record) int64 {
	return max(rec.lastUsed, c.used(h))
}

// persisted records that h's last use up to used is now on disk.
func (c *cache) persisted(h Hash, used int64) {
	s := c.shard(h)
	s.mu.Lock()
	if e := s.m[h]; e != nil && used > e.rec.lastUsed {
		e.rec.lastUsed = used
		s.releaseLocked(h, e)
	}
	s.mu.Unlock()
}

type touch struct {
	h    Hash
	used int64
}

// dirty lists the uses not yet on disk.
func (c *cache) dirty() []touch {
	var out []touch
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for h, e := range s.m {
			if e.dirty() {
				out = append(out, touch{h, e.used})
			}
		}
		s.mu.Unlock()
	}
	return out
}
