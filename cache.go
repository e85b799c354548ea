package tokenstore

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"unsafe"
)

// cache holds decoded records of recently checked tokens and, for each, the
// latest use seen in memory. It is what lets Validate slide a token without
// a write: the use is recorded here and reaches the file later (see
// touch.go).
//
// Coherence: a record changes on disk only by a write that either finds
// its entry here (touches update entry.rec.lastUsed after commit) or
// deletes it (revoke, rotate, sweep). A delete calls beginDelete inside its
// transaction, before the commit, and endDelete after the transaction has
// ended: while a delete is in flight, readers of that token go to the file
// and cache nothing, so no one can be answered from memory after the
// delete is committed (another call may already have seen it: a Revoke
// answering ErrNotFound, a List without the token). endDelete then drops
// the entry. A use such a reader answered valid for, on a token not
// cached, is kept aside (shard.kept) until the last delete of the token
// ends: a delete that does not commit leaves the token, and without its
// use a Sliding token would expire before the deadline that reader
// answered. Such a use is written as any other (dirty, pending, the
// Validate that writes its own): after the delete's transaction, as
// writes take turns, so that it finds its record gone if the delete
// committed. A reader that missed reads the file outside the lock, so it
// may hold a record that a concurrent delete has just removed; shard.gen,
// bumped by every endDelete, tells it to retry instead of
// caching a dead record. [cache.lookup] is the one place that applies this
// rule; no other file touches a shard's fields.
//
// The sweep's deletes are decisions as well as deletes: the sweep reads
// each token's last use (here, for a Sliding token) at its clock, and a
// Validate that read the clock before the sweep did, just before the
// token's deadline, may note its use after that read, answer valid and
// slide the deadline. The shard's lock orders the two at the sweep's mark
// (beginSweepAll): a use noted before it that keeps the token alive past
// the sweep's clock takes the token out of the sweep (re-filed, as the
// sweep re-files any token alive by a use); a Validate or Lookup that
// comes after it is answered expired, as it would be had it read the
// clock after the sweep did, and notes nothing. Not by a margin of time:
// a goroutine can be descheduled between its clock read and its use for
// any time. A Revoke's or Rotate's mark (beginDelete) keeps its rule
// above: until it commits, the token is what the file says.
//
// For that, a use noted after the scan's read must still be here at the
// mark. Its entry stays while the use is unwritten (dirty), but once the
// flush has written it, the entry is clean and may be dropped (evicted,
// or at once when no clean entries are kept), while the scan's read
// transaction may predate that write: the mark found nothing and deleted
// a token answered valid. So from before the scan's first read
// transaction to the mark, no clean entry is dropped (holdClean): a use
// noted in that window is then here at the mark, and one written before
// it is in every read transaction of the scan.
//
// Memory: clean entries are bounded by the cache's size; an entry with a
// use not yet written is kept regardless until the use is written (the
// eviction skips it), so unwritten uses hold at most one entry per token
// the file holds — also while the disk refuses writes for an hour. See
// Options.CacheSize. A use kept aside (shard.kept) holds one entry per
// token with a delete in flight. While a sweep scans (holdClean), clean
// entries are not dropped either: a shard grows by the tokens first
// checked meanwhile, and later inserts shrink it back (insertLocked).
type cache struct {
	shards [cacheShards]shard
	limit  int // clean entries kept per shard; dirty ones are kept regardless
}

const cacheShards = 64

// shard is a shardState followed by at least a whole shardLine of
// padding, so that two cores working on neighbouring shards do not pass
// one line back and forth (with a fixed 16 bytes of padding the shards
// were 104 bytes and shared lines). The heap does not align the cache to
// a line: its shards began 8, 56, 72 or 88 bytes into a 128-byte span
// from run to run, and padded only to whole spans (40 bytes after an
// 88-byte state) two states still shared one at most of those offsets.
// Padding of a whole span keeps them apart wherever the cache lies, for
// 128 more bytes a shard (8 KB a store).
type shard struct {
	shardState
	_ [shardLine + (shardLine-unsafe.Sizeof(shardState{})%shardLine)%shardLine]byte
}

// shardLine is the span shards are padded to: two 64-byte cache lines,
// as x86's adjacent-line prefetcher fetches lines in pairs.
const shardLine = 128

type shardState struct {
	mu       sync.Mutex
	m        map[Hash]*entry
	deleting map[Hash]int // deletes in flight, by token: see beginDelete; sweepMark for the sweep's
	// kept: the entries, not in m, of tokens with a delete in flight
	// that took a use (lookup caches nothing of such a token), until the
	// last of those deletes ends: gone, the use goes with the record;
	// not, it is cached as a use not yet written (restoreLocked). A
	// flush lists them too (dirty), and a write of one (persistedLocked)
	// leaves nothing to cache.
	kept map[Hash]*entry
	// pending lists the entries of m that took a use not yet written,
	// each once (entry.listed); those written or dropped since are left
	// in it until dirty() or a compaction skips them. npending counts the
	// entries of m with a use not yet written. A list, not a map: on a
	// returning user's Validate (1M tokens, cold cache) a map's assign
	// was 8% of the call, a cache miss in a table that the flush empties
	// and the next returning users fill again.
	pending  pendingList
	npending int
	// looked: the successors a Lookup has answered while no use of them
	// was known (see lookupResult). The first Lookup of a successor ends
	// its predecessor's grace (rotate.go) and writes nothing, so this is
	// where that end is kept, until the successor's record is deleted:
	// not for a time, since a clock set back would then reopen a grace
	// its successor's use had ended. A Validate needs no entry: its use is
	// the successor's last use, later than its creation, in memory until
	// written and in the file after.
	looked map[Hash]struct{}
	gen    uint64
	limit  int  // the cache's limit, kept here so shard methods need no cache
	hold   bool // a sweep is between its scan and its mark: see holdClean
}

type entry struct {
	rec    record // rec.lastUsed is the use as persisted
	used   int64  // latest use known, >= rec.lastUsed
	listed bool   // in its shard's pending list
}

// pendingRef is an entry of a shard's pending list.
type pendingRef struct {
	h Hash
	e *entry
}

// pendingList is a shard's pending list, in blocks of pendingBlock refs,
// so that it grows without copying: as one slice, grown by append while a
// freshly opened store's returning users filled it, its copies were 5% of
// a cold Validate (Validate/returning/cold, CPU profile: growslice). A
// compaction keeps the blocks, as the slice kept its array: the next
// round of uses fills them again.
type pendingList struct {
	blocks [][]pendingRef // every block but the one holding ref n is full
	n      int
}

const pendingBlock = 256

func (l *pendingList) len() int { return l.n }

func (l *pendingList) add(p pendingRef) {
	b := l.n / pendingBlock
	if b == len(l.blocks) {
		l.blocks = append(l.blocks, make([]pendingRef, 0, pendingBlock))
	}
	l.blocks[b] = append(l.blocks[b], p)
	l.n++
}

// keep keeps, in order, the refs for which f reports true, in the blocks
// they were in (written behind the reading: in place), and clears the
// rest, so that no pointer is kept to a dropped entry.
func (l *pendingList) keep(f func(pendingRef) bool) {
	w := 0
	for _, b := range l.blocks {
		for _, p := range b {
			if f(p) {
				l.blocks[w/pendingBlock][w%pendingBlock] = p
				w++
			}
		}
	}
	for i := range l.blocks {
		n := min(max(w-i*pendingBlock, 0), pendingBlock)
		clear(l.blocks[i][n:len(l.blocks[i])])
		l.blocks[i] = l.blocks[i][:n]
	}
	l.n = w
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
		c.shards[i].kept = make(map[Hash]*entry)
		c.shards[i].looked = make(map[Hash]struct{})
		c.shards[i].limit = c.limit
	}
	return c
}

// reserve sizes each shard's map, while empty, for its share of tokens
// records (at most the entries the cache keeps): after a restart, the
// returning users of a large store fill the cache from nothing, and a map
// grown by doubling rehashes all it holds at each step.
//
// Open passes the file's count, at most its size over minRecordBytes.
func (c *cache) reserve(tokens int64) {
	n := int(min(max(tokens, 0), int64(c.limit)*cacheShards) / cacheShards)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		if len(s.m) == 0 && n > 0 {
			s.m = make(map[Hash]*entry, n)
		}
		s.mu.Unlock()
	}
}

// minRecordBytes is the least a token's record takes in the file: a
// bbolt leaf element's header (16 bytes) and its key (a Hash).
const minRecordBytes = 16 + int64(len(Hash{}))

func (c *cache) shard(h Hash) *shard { return &c.shards[c.shardIndex(h)] }

// shardIndex reads the hash's last bytes: its first are the issue time of
// a new-format token (Hash), the same for every token of a millisecond.
func (c *cache) shardIndex(h Hash) int {
	return int(binary.LittleEndian.Uint64(h[len(h)-8:]) % cacheShards)
}

// evictProbes bounds the entries insertLocked looks at to find a clean one
// to evict. Unbounded, a shard full of uses not yet written (every entry
// dirty until the next flush) made each insert walk the whole shard: on
// 1M tokens, uniform Validate of 500k of them took 38 µs/op at a 37% hit
// rate. When the probes find none, the shard grows past its limit (dirty
// entries are kept regardless), and later inserts shrink it back.
//
// The limit counts clean entries only (len(m) - npending): dirty ones
// are kept whatever the limit, so counting them made every insert into a
// shard of unwritten uses probe in vain, twice, and evict the clean
// entries it did find for nothing.
const evictProbes = 8

// insertLocked adds e, first evicting up to two clean entries when the
// shard holds its limit of them (two, so that a shard over its limit
// shrinks back), unless a sweep holds them (holdClean).
func (s *shard) insertLocked(h Hash, e *entry) {
	for range 2 {
		if s.hold || len(s.m)-s.npending < s.limit {
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

// releaseLocked drops e when the cache keeps no clean entries, unless a
// sweep holds them (holdClean).
func (s *shard) releaseLocked(h Hash, e *entry) {
	if s.limit == 0 && !e.dirty() && !s.hold {
		delete(s.m, h)
	}
}

// holdClean opens (on) or closes the window, from before a sweep's scan
// to its mark (beginSweepAll), in which no clean entry is dropped, so
// that the mark sees every use noted since the scan began (see the
// coherence rule above). One sweep runs at a time.
func (c *cache) holdClean(on bool) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.hold = on
		s.mu.Unlock()
	}
}

// sweepMark is what the sweep's mark (beginSweepAll) adds to
// shard.deleting[h], where every other delete in flight adds 1: so that
// the one map read lookup already makes tells a token the sweep has
// decided to delete (answered expired) from one a Revoke or Rotate is
// deleting (read from the file). One sweep runs at a time (DB.sweep), so
// a token holds at most two sweep marks (the running sweep's, and one a
// sweep cut short keeps: DB.holdCutMarks), and nested deletes of one
// token number far fewer than sweepMark.
const sweepMark = 1 << 24

// deletingLocked reports whether a delete of h is in flight, and whether
// the sweep's is among them (sweepMark).
func (s *shard) deletingLocked(h Hash) (deleting, swept bool) {
	if len(s.deleting) == 0 {
		return false, false
	}
	n := s.deleting[h]
	return n > 0, n >= sweepMark
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

// endDelete ends one beginDelete of h, after its transaction has ended.
// When it committed (gone), it forgets h's entry and its Lookup mark.
// When it did not (rolled back, its commit failed, a sweep cut short
// before h's record), the record stays, and so do its entry, its use not
// yet written and its Lookup mark: dropping them lost a successor's first
// use, and with it the end of its predecessor's grace (rotate.go), which
// a stolen old token then had again. A use kept aside (shard.kept) waits
// for the last delete of h: one that commits takes it with the record.
func (c *cache) endDelete(h Hash, gone bool) {
	s := c.shard(h)
	s.mu.Lock()
	s.endDeleteLocked(h, gone, 1)
	s.gen++
	s.mu.Unlock()
}

// endDeleteLocked ends a mark of h that added mark to s.deleting[h].
func (s *shard) endDeleteLocked(h Hash, gone bool, mark int) {
	if s.deleting[h] -= mark; s.deleting[h] <= 0 {
		delete(s.deleting, h)
		if k := s.kept[h]; k != nil && !gone {
			delete(s.kept, h)
			s.restoreLocked(h, k)
		}
	}
	if gone {
		delete(s.kept, h)
		if e := s.m[h]; e != nil {
			if e.dirty() {
				s.npending--
				e.used = e.rec.lastUsed // its use goes with its record: the pending list drops it
			}
			delete(s.m, h)
		}
		delete(s.looked, h)
	}
}

// restoreLocked caches k, h's entry kept aside while deletes of h were in
// flight, the last of which has ended without deleting h's record: its
// use is then one not yet written, as any other. lookup caches nothing
// of h while a delete of it is in flight, so m should hold no entry of h
// here; one found anyway takes k's use only if later, so that no use goes
// backwards and the pending count stays that of m's dirty entries.
func (s *shard) restoreLocked(h Hash, k *entry) {
	e := s.m[h]
	if e == nil {
		if k.dirty() { // k is in no list: it was in no map
			s.insertLocked(h, k)
			s.listLocked(h, k)
		}
		return
	}
	if k.used > e.used {
		wasDirty := e.dirty()
		e.used = k.used
		if !wasDirty && e.dirty() {
			s.listLocked(h, e)
		}
	}
}

// listLocked counts e, h's entry in m, which has just taken a use not yet
// written, and lists it in the pending list unless it is there already.
func (s *shard) listLocked(h Hash, e *entry) {
	s.npending++
	if !e.listed {
		e.listed = true
		s.pending.add(pendingRef{h, e})
		if s.pending.len() > 2*s.npending+pendingSlack {
			s.compactLocked(nil)
		}
	}
}

// successorUse is lastUse of the successor h (rec its record), and
// whether a Lookup answered it while no use of it was known
// (shard.looked): all under one hold of its shard's lock.
func (c *cache) successorUse(h Hash, rec *record) (used int64, looked, swept bool) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	used, swept = s.lastUseLocked(h, rec)
	_, looked = s.looked[h]
	return used, looked, swept
}

// lastUse is h's latest use: the one in memory when it is later than the
// one stored in rec; and whether the sweep has marked h for deletion
// (beginSweepAll), under the same hold of h's shard lock. Whatever answers
// whether a token is live (Rotate, Get, List, the subject's limit, a
// successor's grace) refuses a marked one as expired, as Validate and
// Lookup do (see the coherence rule above): the sweep's decision, at a
// clock past the deadline, came first, whatever the caller's clock read.
func (c *cache) lastUse(h Hash, rec *record) (used int64, swept bool) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastUseLocked(h, rec)
}

func (s *shard) lastUseLocked(h Hash, rec *record) (used int64, swept bool) {
	used = rec.lastUsed
	if e := s.entryLocked(h); e != nil {
		used = max(used, e.used)
	}
	_, swept = s.deletingLocked(h)
	return used, swept
}

// entryLocked is h's entry: cached, or kept aside while a delete of h is
// in flight (shard.kept; never both), or nil.
func (s *shard) entryLocked(h Hash) *entry {
	if e := s.m[h]; e != nil {
		return e
	}
	return s.kept[h]
}

// persisted records that h's last use up to used is now on disk.
func (c *cache) persisted(h Hash, used int64) {
	s := c.shard(h)
	s.mu.Lock()
	s.persistedLocked(h, used)
	s.mu.Unlock()
}

func (s *shard) persistedLocked(h Hash, used int64) {
	if e := s.m[h]; e != nil && used > e.rec.lastUsed {
		wasDirty := e.dirty()
		e.rec.lastUsed = used
		if wasDirty && !e.dirty() {
			s.npending--
		}
		s.releaseLocked(h, e)
	} else if k := s.kept[h]; k != nil && used > k.rec.lastUsed {
		k.rec.lastUsed = used // written: restoreLocked need not cache it
	}
}

// beginSweepAll and endDeleteAll are beginDelete and endDelete for each
// of hs (the sweep's: 100,000 tokens at a time), with the sweep's mark
// (sweepMark). beginSweepAll is where the sweep's decision, made at its
// clock now, takes effect, one shard lock hold at a time (see the
// coherence rule above): a token whose use noted in memory since the
// sweep read it now gives a deadline past now is not marked but returned
// in alive, with that use and deadline, for the sweep to re-file; its
// Validate answered valid first. A now of math.MaxInt64 marks every one
// (beginDeleteAll). They take each shard's
// lock once per deleteBatch tokens of it, not once per token, and
// endDeleteAll moves a shard's gen once per batch. One at a time, the
// sweep's 200,000 lock operations met the Validates beside it on the
// shards' locks, often enough that sync.Mutex went into starvation mode
// and each Unlock handed the Validate's P to the sweep (60 ms of a
// Validate goroutine's scheduling latency during one Sweep/100k-of-1M, in
// a runtime trace, against none without the sweep); and each endDelete
// moved its shard's gen, making any Validate that read the file meanwhile
// in that shard read it again.
func (c *cache) beginSweepAll(hs []Hash, now int64) (alive []sweptAlive) {
	return c.deleteAll(hs, false, false, now)
}

// beginDeleteAll is beginSweepAll for tokens the sweep deletes whatever
// their uses (those a cut sweep began deleting: see metaSweeping).
func (c *cache) beginDeleteAll(hs []Hash) { c.deleteAll(hs, false, false, math.MaxInt64) }

// endDeleteAll ends the marks of beginSweepAll or beginDeleteAll: it is
// endDelete(h, gone) for each of hs.
func (c *cache) endDeleteAll(hs []Hash, gone bool) { c.deleteAll(hs, true, gone, 0) }

// sweptAlive is a token beginSweepAll found alive by a use noted after the
// sweep read it: its latest use, and the deadline that use gives.
type sweptAlive struct {
	h              Hash
	used, deadline int64
}

// deleteBatch bounds the tokens of one shard's lock hold in deleteAll: a
// few µs each, so that a Validate waits for at most about 100 µs.
const deleteBatch = 256

func (c *cache) deleteAll(hs []Hash, end, gone bool, now int64) (alive []sweptAlive) {
	var scratch []Hash
	by, at := byShard(c, hs, func(h *Hash) *Hash { return h }, &scratch)
	for i := range c.shards {
		s := &c.shards[i]
		for part := by[at[i]:at[i+1]]; len(part) > 0; {
			n := min(len(part), deleteBatch)
			s.mu.Lock()
			for _, h := range part[:n] {
				if end {
					s.endDeleteLocked(h, gone, sweepMark)
					continue
				}
				// An Absolute token's deadline is the same at any use:
				// deadlineAt never passes now for it here.
				if now != math.MaxInt64 {
					if e := s.entryLocked(h); e != nil { // kept: a use answered while a Revoke of h is in flight
						if d := e.rec.deadlineAt(e.used); now < d {
							alive = append(alive, sweptAlive{h, e.used, d})
							continue
						}
					}
				}
				s.deleting[h] += sweepMark
			}
			if end {
				s.gen++
			}
			s.mu.Unlock()
			part = part[n:]
		}
	}
	return alive
}

// byShard orders xs by the shard of their hash (a counting sort), in
// *scratch, which it reuses and keeps: shard i's are by[at[i]:at[i+1]].
// For the calls that take each shard's lock once for many tokens
// (persistedAll, deleteAll).
func byShard[T any](c *cache, xs []T, hash func(*T) *Hash, scratch *[]T) (by []T, at [cacheShards + 1]int) {
	for i := range xs {
		at[c.shardIndex(*hash(&xs[i]))+1]++
	}
	for i := 1; i <= cacheShards; i++ {
		at[i] += at[i-1]
	}
	by = slices.Grow((*scratch)[:0], len(xs))[:len(xs)]
	next := at
	for i := range xs {
		j := c.shardIndex(*hash(&xs[i]))
		by[next[j]] = xs[i]
		next[j]++
	}
	*scratch = by
	return by, at
}

// persistedAll is persisted for each of ts, a flush transaction's uses:
// it takes each shard's lock once, not once per use, so that Validates
// meet the flush on a shard's lock 64 times per transaction instead of
// once per use written (about 800). scratch is reused across calls.
func (c *cache) persistedAll(ts []touch, scratch *[]touch) {
	by, at := byShard(c, ts, func(t *touch) *Hash { return &t.h }, scratch)
	for i := range c.shards {
		if at[i] == at[i+1] {
			continue
		}
		s := &c.shards[i]
		s.mu.Lock()
		for _, t := range by[at[i]:at[i+1]] {
			s.persistedLocked(t.h, t.used)
		}
		s.mu.Unlock()
	}
}

// touch is a use to write: the token's hash and id, and the use.
type touch struct {
	h    Hash
	id   [16]byte
	used int64
}

// dirty lists the uses not yet on disk. It walks only the entries that
// hold one (shard.pending), so that a flush does not hold each shard's
// lock for a walk of its whole map while Validates wait, and it sizes its
// slice before taking the locks: growing it by append under a shard's
// lock copied megabytes (100,000 uses are 6 MB) while that shard's
// Validates waited.
func (c *cache) dirty() []touch {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.npending + len(s.kept)
		s.mu.Unlock()
	}
	out := make([]touch, 0, n+n/8+cacheShards) // room for uses made meanwhile
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.compactLocked(func(p pendingRef) { out = append(out, touch{p.h, p.e.rec.id, p.e.used}) })
		// The uses kept aside too: Close's flush may be the last, and the
		// delete they wait for may end after it. Written after that
		// delete's transaction (writes take turns), a use finds its
		// record gone if that delete committed, and is skipped.
		for h, k := range s.kept {
			if k.dirty() {
				out = append(out, touch{h, k.rec.id, k.used})
			}
		}
		s.mu.Unlock()
	}
	return out
}

// pendingSlack is how many written or dropped entries a shard's pending
// list may hold beyond twice its unwritten ones before an insert
// compacts it: the list stays within a constant factor of the uses it
// lists when nothing calls dirty() (Options.TouchInterval < 0), and a
// compaction's cost is spread over the inserts that grew it.
const pendingSlack = 64

// compactLocked drops from s.pending the entries no longer holding a
// use not yet written (written since, or dropped from s.m), calling
// each, when not nil, with every entry it keeps.
func (s *shard) compactLocked(each func(pendingRef)) {
	s.pending.keep(func(p pendingRef) bool {
		if !p.e.dirty() {
			p.e.listed = false
			return false
		}
		if each != nil {
			each(p)
		}
		return true
	})
}

// pending is h's use not yet on disk, and whether there is one.
func (c *cache) pending(h Hash) (touch, bool) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entryLocked(h); e != nil && e.dirty() { // kept: a use answered while a delete of h is in flight
		return touch{h, e.rec.id, e.used}, true
	}
	return touch{}, false
}

// lookupResult is what [cache.lookup] found.
type lookupResult struct {
	info    Info  // at the latest use, the one just made included
	hit     bool  // answered from memory, without reading the file
	expired bool  // past its deadline: info is zero
	lag     int64 // ms the stored last use is behind the latest; 0 when nothing is to be written
}

// lookup answers a Validate (use set: a use at now is recorded) or a
// Lookup of h. On a miss, or while a delete of h is in flight, it calls
// read outside the lock (the file decides: once that delete commits,
// someone may have seen it, a Revoke's ErrNotFound, before the entry here
// is dropped) and caches the record unless a delete of h is in flight,
// keeping aside (shard.kept) the use it notes then; a delete in the shard
// that ended meanwhile (gen) makes it read again. A token the sweep has
// marked (beginSweepAll) is answered expired, or as read's error once
// gone. An error of read is returned as is.
func (c *cache) lookup(h Hash, now int64, use bool, read func() (record, error)) (r lookupResult, err error) {
	s := c.shard(h)
	for {
		s.mu.Lock()
		e := s.m[h]
		deleting, swept := s.deletingLocked(h)
		r.hit = e != nil && !deleting
		cached := e != nil // e is s.m[h]: each map operation counts on 1M tokens
		if !r.hit {
			gen := s.gen
			s.mu.Unlock()
			rec, err := read()
			if err != nil {
				return r, err
			}
			s.mu.Lock()
			if s.gen != gen {
				s.mu.Unlock()
				continue
			}
			deleting, swept = s.deletingLocked(h)
			e = s.m[h]
			cached = e != nil
			switch {
			case cached:
			case !deleting:
				e = &entry{rec: rec, used: rec.lastUsed}
				s.insertLocked(h, e)
				cached = true
			case s.kept[h] != nil:
				e = s.kept[h] // a use answered since the delete began: this one goes on it
			default: // a record about to go is not cached
				e = &entry{rec: rec, used: rec.lastUsed}
			}
		}
		// Marked by the sweep (beginSweepAll): its decision, at a clock
		// past the deadline, came before this call's use, whatever this
		// call's clock read. Nothing is noted: not a use, not a
		// successor's first Lookup (looked), so a successor the sweep is
		// deleting ends no grace; its predecessor's grace ends with it
		// (graceOpen: expired, then not found).
		if swept || now >= e.rec.deadlineAt(e.used) {
			s.mu.Unlock()
			r.expired = true
			return r, nil
		}
		// A token Rotate wrote, of which no use is known before this
		// one: this one ends its predecessor's grace (rotate.go), whatever
		// the clock says of that grace now, since the clock may be set
		// back into it. A Validate's use is kept as any use is; a
		// Lookup's in looked.
		first := e.rec.successor() && e.used == e.rec.created
		if first && !use {
			s.looked[h] = struct{}{}
		}
		used := now
		if first && now <= e.rec.created {
			// A successor's first use, in its creation's millisecond
			// (or with the clock earlier): the file knows a use only as
			// a last use later than the creation, and this use ends its
			// predecessor's grace (rotate.go), so it is counted 1 ms
			// later, to be written as any use is.
			used = e.rec.created + 1
		}
		if use && used > e.used { // never backwards, whatever the clock does
			wasDirty := e.dirty()
			e.used = used
			switch {
			case !cached && e.dirty():
				s.kept[h] = e
			case cached && !wasDirty && e.dirty():
				s.listLocked(h, e)
			}
		}
		r.info = e.rec.info(e.used)
		// Also while a delete of h is in flight: a Validate that writes
		// its use before returning (TouchInterval < 0, a returning user
		// with FsyncReturningUses) writes it after that delete's
		// transaction, which may not commit, and one racing Close says
		// so (ErrClosed). Its entry may be one kept aside (pending).
		if e.dirty() {
			r.lag = e.used - e.rec.lastUsed
		}
		if cached {
			s.releaseLocked(h, e)
		}
		s.mu.Unlock()
		return r, nil
	}
}
