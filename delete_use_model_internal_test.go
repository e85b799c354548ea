package tokenstore

import (
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestCache_DeleteUseModel drives one cache with random Validates and
// Lookups interleaved with deletes (a Revoke's, the sweep's) that commit
// or fail, and flushes, against a model of the file, and checks after
// each step what cache.go promises (Coherence, Memory):
//
//   - no token is answered valid once a delete of it has committed and
//     ended (a token resurrected in the cache is the worst bug possible);
//   - a use answered valid is known (file, cache or kept aside) as long as
//     the token lives, so that a failed delete loses no use;
//   - nothing of a token stays in memory once it is gone and no delete
//     of it is in flight; a use kept aside only while one is;
//   - npending counts the dirty entries of m, each listed once.
//
// A lookup's read runs outside the shard lock, so the other steps are
// also run from inside reads, before or after the read's snapshot.
func TestCache_DeleteUseModel(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		for _, size := range []int{-1, cacheShards, 64 * cacheShards} {
			t.Run(fmt.Sprintf("seed%d/size%d", seed, size), func(t *testing.T) {
				runDeleteUseModel(t, uint64(seed), size)
			})
		}
	}
}

type modelDelete struct {
	h      Hash
	sweep  bool
	open   bool // its transaction runs (it holds the writer)
	gone   bool // it committed
	ended  bool
	marked bool // the sweep's mark was taken (not left out as alive)
}

// end ends d in c, as its deleter does after its transaction: a Revoke's
// endDelete, a sweep's endDeleteAll (of a mark it set).
func (d *modelDelete) end(c *cache) {
	d.ended = true
	switch {
	case d.sweep && d.marked:
		c.endDeleteAll([]Hash{d.h}, d.gone)
	case !d.sweep:
		c.endDelete(d.h, d.gone)
	}
}

func runDeleteUseModel(t *testing.T, seed uint64, size int) {
	const hour = int64(time.Hour / time.Millisecond)
	rnd := mrand.New(mrand.NewPCG(seed, 7))
	c := newCache(size)
	const ntok = 5
	hs := make([]Hash, ntok)
	recs := make([]record, ntok)
	file := map[Hash]*record{} // the file: records with their stored last use
	answered := map[Hash]int64{}
	seen := map[Hash]bool{} // a successor answered by a Validate or Lookup: its predecessor's grace is over
	for i := range hs {
		hs[i] = shardHash(i + 1) // one shard: evictions meet each other
		recs[i] = testRecord(1000)
		if i%2 == 1 { // a successor: its first use ends a grace
			recs[i].family, recs[i].born = uuid.Must(uuid.NewV7()), 1000
		}
		r := recs[i]
		file[hs[i]] = &r
	}
	now := int64(1000)
	var dels []*modelDelete
	var flushList []touch // listed by dirty(), not yet written
	writerBusy := func() bool {
		for _, d := range dels {
			if d.open {
				return true
			}
		}
		return false
	}
	inFlight := func(h Hash) (n int, committed bool) {
		for _, d := range dels {
			if d.h == h && !d.ended && (!d.sweep || d.marked) {
				n++
				committed = committed || d.gone
			}
		}
		return n, committed
	}
	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		for _, l := range log[max(0, len(log)-40):] {
			t.Log(l)
		}
		t.Fatalf(format, args...)
	}

	var step func(depth int)
	lookup := func(depth int) {
		i := rnd.IntN(ntok)
		h := hs[i]
		use := rnd.IntN(3) != 0
		at := now
		read := func() (record, error) {
			before := rnd.IntN(2) == 0
			if before && depth < 2 && rnd.IntN(2) == 0 {
				step(depth + 1)
			}
			r, ok := file[h]
			var rec record
			if ok {
				rec = *r
			}
			if !before && depth < 2 && rnd.IntN(2) == 0 {
				step(depth + 1)
			}
			if !ok {
				return record{}, ErrNotFound
			}
			return rec, nil
		}
		log = append(log, fmt.Sprintf("lookup %d use=%v at %d", i, use, at))
		r, err := c.lookup(h, at, use, read)
		if err != nil || r.expired {
			return
		}
		_, live := file[h]
		_, committed := inFlight(h)
		if !live && !committed {
			fail("token %d answered valid (used %d) after its delete committed and ended", i, r.info.LastUsedAt.UnixMilli())
		}
		if use && live {
			answered[h] = max(answered[h], r.info.LastUsedAt.UnixMilli())
		}
		if live {
			seen[h] = true
		}
	}
	step = func(depth int) {
		switch k := rnd.IntN(10); {
		case k == 0: // the clock moves, sometimes back
			now += rnd.Int64N(hour/2) - hour/8
			log = append(log, fmt.Sprintf("now %d", now))
		case k == 1 && !writerBusy(): // a Revoke's transaction
			i := rnd.IntN(ntok)
			if _, ok := file[hs[i]]; ok {
				c.beginDelete(hs[i])
				dels = append(dels, &modelDelete{h: hs[i], open: true})
				log = append(log, fmt.Sprintf("begin delete %d", i))
			}
		case k == 2 && !writerBusy(): // the sweep's mark, at its clock, for a token the file says expired
			i := rnd.IntN(ntok)
			r, ok := file[hs[i]]
			if ok && now >= r.deadline() {
				alive := c.beginSweepAll([]Hash{hs[i]}, now)
				d := &modelDelete{h: hs[i], sweep: true, open: true, marked: len(alive) == 0}
				dels = append(dels, d)
				log = append(log, fmt.Sprintf("sweep mark %d at %d alive=%v", i, now, alive))
			}
		case k == 3: // the open transaction ends
			for _, d := range dels {
				if d.open {
					d.open = false
					d.gone = rnd.IntN(2) == 0
					if d.sweep && !d.marked {
						d.gone = false // left out: not deleted
					}
					if d.gone {
						delete(file, d.h)
						delete(answered, d.h)
						delete(seen, d.h)
					}
					log = append(log, fmt.Sprintf("tx of %x ends gone=%v", d.h[8], d.gone))
				}
			}
		case k == 4: // a delete's end, after its transaction
			for _, d := range dels {
				if !d.open && !d.ended {
					d.end(c)
					log = append(log, fmt.Sprintf("end %x gone=%v", d.h[8], d.gone))
					break
				}
			}
		case k == 5: // the flush lists the uses
			if flushList == nil {
				flushList = c.dirty()
				log = append(log, fmt.Sprintf("dirty %v", flushList))
			}
		case k == 6 && !writerBusy() && flushList != nil: // and writes them
			for _, u := range flushList {
				if r, ok := file[u.h]; ok && r.id == u.id {
					r.lastUsed = max(r.lastUsed, u.used)
				}
			}
			var scratch []touch
			c.persistedAll(flushList, &scratch)
			log = append(log, "flushed")
			flushList = nil
		default:
			lookup(depth)
		}
	}

	check := func(n int) {
		for i, h := range hs {
			s := c.shard(h)
			s.mu.Lock()
			e, k := s.m[h], s.kept[h]
			count := s.deleting[h]
			_, looked := s.looked[h]
			s.mu.Unlock()
			r, live := file[h]
			nf, _ := inFlight(h)
			if k != nil && (count == 0 || e != nil) {
				fail("step %d: token %d kept aside with %d deletes in flight, cached %v", n, i, count, e != nil)
			}
			if !live && nf == 0 && (e != nil || k != nil || looked) {
				fail("step %d: token %d gone, no delete in flight, yet cached %v kept %v looked %v", n, i, e != nil, k != nil, looked)
			}
			if live {
				known := r.lastUsed
				if e != nil {
					known = max(known, e.used)
				}
				if k != nil {
					known = max(known, k.used)
				}
				if seen[h] && r.successor() && known <= r.created && !looked {
					fail("step %d: successor %d answered, yet neither a use nor a Lookup mark of it is known: its predecessor's grace is open again", n, i)
				}
				if a, ok := answered[h]; ok && known < a {
					fail("step %d: token %d answered valid at use %d, known only to %d (file %d)", n, i, a, known, r.lastUsed)
				}
			}
		}
		s := &c.shards[0]
		s.mu.Lock()
		dirty, listed := 0, map[*entry]int{}
		for _, e := range s.m {
			if e.dirty() {
				dirty++
			}
		}
		for p := range s.pending.all() {
			if p.e.dirty() && s.m[p.h] == p.e {
				listed[p.e]++
			}
		}
		npending := s.npending
		s.mu.Unlock()
		if npending != dirty || len(listed) != dirty {
			fail("step %d: npending %d, dirty entries %d, listed %d", n, npending, dirty, len(listed))
		}
		for _, v := range listed {
			if v != 1 {
				fail("step %d: an entry listed %d times", n, v)
			}
		}
	}
	for n := range 400 {
		step(0)
		check(n)
	}
	// Drain: every transaction ends (failing), every delete ends, a flush.
	for _, d := range dels {
		if d.open {
			d.open = false
		}
	}
	for _, d := range dels {
		if !d.ended {
			d.end(c)
		}
	}
	check(-1)
	for _, u := range c.dirty() {
		if r, ok := file[u.h]; ok && r.id == u.id {
			r.lastUsed = max(r.lastUsed, u.used)
		}
	}
	for h, a := range answered {
		if r := file[h]; r.lastUsed < a {
			fail("after the drain: a use answered at %d, stored %d", a, r.lastUsed)
		}
	}
}
