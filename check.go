package tokenstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"hash/maphash"
	"os"
	"runtime/debug"
	"slices"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Check verifies the file: bbolt's own consistency check (pages, freelist),
// then tokenstore's: every record's checksum, every index entry points at a
// record that agrees with it, every record is in each index, and the
// stored count matches. It returns one line per problem, naming token IDs
// (never tokens), and an error only when it could not run. It never
// repairs anything and works on a ReadOnly store. Writers wait while it
// runs: bbolt's check is exact only while nothing else writes.
func (db *DB) Check(ctx context.Context) (problems []string, err error) {
	if err := db.begin(ctx, false); err != nil {
		return nil, wrap("check", err)
	}
	defer func() {
		if r := recover(); r != nil { // bbolt panics on some damaged pages
			problems = append(problems, fmt.Sprintf("bbolt: %v", r))
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // see view
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	check := func(tx *bolt.Tx) error {
		// tx.Check reads pages through bbolt's mapping in a goroutine of
		// its own, where a damaged element offset or page pointer is a
		// fault that ends the process (no recover reaches it). So the
		// pages are first read from the file, here, and bounds-checked;
		// tx.Check runs only on a tree that passed.
		if problems = checkPages(db.path, tx); len(problems) > 0 {
			return nil
		}
		for e := range tx.Check() {
			add("bbolt: %v", e)
		}
		if len(problems) > 0 {
			return nil // the tree itself is damaged: walking it could panic
		}
		var buckets [entryBuckets]*bolt.Bucket
		for i, name := range entryBucket {
			buckets[i] = tx.Bucket(name)
		}
		tokens, ids := buckets[inTokens], buckets[inIDs]
		// A sweep in progress, or cut short, leaves expired tokens half
		// deleted, in the order sweep.go gives: those are not damage.
		sweeping := tx.Bucket(bucketMeta).Get(metaSweeping) != nil
		now := db.nowMs()
		n := 0
		// Damaged records are named by ID, which only the indexes know:
		// reported once the ids index has been walked.
		var bad damage
		badAt := map[Hash]*damagedRecord{}
		c := tokens.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			n++
			if len(k) != len(Hash{}) {
				add("tokens: key of %d bytes", len(k))
				continue
			}
			rec, err := decodeRecord(v)
			if err != nil {
				bad.add(Hash(k), uuid.UUID{}, err)
				badAt[Hash(k)] = bad[len(bad)-1]
				continue
			}
			e, err := decodeIDValue(rec.id[:], ids.Get(rec.id[:]))
			if err != nil || !e.of(Hash(k)) {
				add("token %s: missing or wrong in the ids index", rec.id)
				continue
			}
			rec.lastUsed, rec.filed = e.used, e.filed
			if rec.filed > rec.deadline() {
				add("token %s: filed in the expiry index after its deadline", rec.id)
			}
			if fk := rec.familyTokenKey(); fk != nil && !(sweeping && now >= rec.deadline()) { // a sweep deletes it with the subjects entry
				if fam := tx.Bucket(bucketFamilies); fam == nil || fam.Get(fk) == nil {
					add("token %s: missing from the %s index", rec.id, bucketFamilies)
				}
			}
			for b, want := range rec.indexEntries(Hash(k)) {
				if b == inSubjects && sweeping && now >= rec.deadline() {
					continue // its subjects entry went first
				}
				if b != inTokens && b != inIDs && !hasEntry(buckets[b], want) {
					add("token %s: missing or wrong in the %s index", rec.id, entryBucket[b])
				}
			}
		}
		if want := int(beUint64(tx.Bucket(bucketMeta).Get(metaCount))); want != n {
			add("meta: count says %d tokens, the file holds %d", want, n)
		}
		// Every index entry must lead to a record that agrees with it.
		index := func(b int, id func(k []byte) []byte, agrees func(k []byte, e idEntry, rec *record) bool) {
			c := buckets[b].Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if b != inIDs && len(v) != 0 {
					add("%s: entry %x has a value", entryBucket[b], k)
				}
				idk := k
				if b != inIDs {
					idk = id(k)
					v = ids.Get(idk)
				}
				e, err := decodeIDValue(idk, v)
				if err != nil {
					if !sweeping || b != inExpiry {
						add("%s: entry %x points at no token", entryBucket[b], k)
					}
					continue
				}
				rh, rv := recordOf(tokens, idk, &e)
				if rv == nil {
					if !sweeping {
						add("%s: entry %x points at no record", entryBucket[b], k)
					}
					continue
				}
				if badAt[rh] != nil { // reported below, by ID
					if b == inIDs {
						badAt[rh].id = uuid.UUID(k)
					}
					continue
				}
				if rec, err := decodeRecord(rv); err == nil && !agrees(k, e, &rec) {
					add("%s: entry %x disagrees with token %s", entryBucket[b], k, rec.id)
				}
			}
		}
		lastID := func(k []byte) []byte { return k[max(len(k)-16, 0):] }
		index(inIDs, nil, func(k []byte, _ idEntry, r *record) bool { return string(k) == string(r.id[:]) })
		index(inSubjects, lastID, func(k []byte, _ idEntry, r *record) bool { return string(k) == string(subjectKey(r.subject, r.id)) })
		index(inExpiry, lastID, func(k []byte, e idEntry, r *record) bool { return string(k) == string(expiryKey(e.filed, r.id)) })
		for _, r := range bad {
			add("%v", r)
		}
		checkFamilies(tx, sweeping, add)
		return nil
	}
	if db.ro {
		err = db.bolt.View(check)
	} else {
		// In a read transaction, tx.Check sees the free list change under
		// it when another transaction commits, and reports pages freed
		// meanwhile as damage. A write transaction, rolled back, keeps
		// other writers out.
		err = db.commit.update(func(tx *bolt.Tx) error {
			if err := check(tx); err != nil {
				return err
			}
			return errRollback
		})
		switch {
		case errors.Is(err, errRollback):
			err = nil
		case errors.Is(err, ErrCorrupt): // a panic, recovered by update
			add("%v", err)
			err = nil
		}
	}
	if err != nil {
		return problems, wrap("check", boltErr(err))
	}
	return problems, nil
}

var errRollback = errors.New("tokenstore: roll back")

// hasEntry reports whether b holds e's key with e's value.
func hasEntry(b *bolt.Bucket, e kv) bool {
	k, v := b.Cursor().Seek(e.k)
	return k != nil && string(k) == string(e.k) && string(v) == string(e.v)
}

// bbolt's page layout (its file format, stable since 2014; integers in
// the machine's byte order): a 16-byte header (id 8, flags 2, count 2,
// overflow 4), then count 16-byte elements. A branch element is pos 4,
// ksize 4, child page 8; a leaf element is flags 4, pos 4, ksize 4, vsize
// 4, its key and value pos bytes after the element's own start. A leaf
// element with flag 1 is a bucket: its value is the bucket's root page (8)
// and sequence (8), followed, when the root is 0, by an inline page.
const (
	pageHeader   = 16
	pageElement  = 16
	branchPage   = 0x01
	leafPage     = 0x02
	metaPage     = 0x04
	bucketLeaf   = 0x01
	bucketHeader = 16
	maxNesting   = 64
)

// checkPages reads every page reachable from tx's root from the file at
// path, not through bbolt's mapping, and checks that each says it is the
// page it should be, is a branch or a leaf, lies below the file's
// high-water mark, is reached once, and holds its elements, keys and
// values within its bounds.
func checkPages(path string, tx *bolt.Tx) []string {
	return walkPages(path, tx, false)
}

// walkPages is checkPages, or with shape its cheaper form, the walk
// treeSound runs at every Open: it checks the meta pages, then walks the
// tree (walkTree; treeSound calls that alone, on the file whose meta pages
// probeFile has checked).
func walkPages(path string, tx *bolt.Tx, shape bool) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{fmt.Sprintf("pages: %v", err)}
	}
	defer f.Close()
	var problems []string
	if _, p := checkMeta(f, uint64(tx.DB().Info().PageSize)); p != "" {
		problems = append(problems, "bbolt: "+p)
	}
	return append(problems, walkTree(f, tx, shape).problems...)
}

// walkTree walks tx's tree in f (walk), and returns its walker: its
// problems, and the pages it reached (seen).
func walkTree(f *os.File, tx *bolt.Tx, shape bool) *pageWalker {
	ps := uint64(tx.DB().Info().PageSize)
	hwm := uint64(tx.Size()) / ps // Open checked the file holds that many pages
	w := &pageWalker{f: f, pageSize: ps, hwm: hwm, seen: newPageSet(hwm), shape: shape}
	w.walk(uint64(tx.Cursor().Bucket().Root()))
	w.f = nil
	return w
}

// bbolt's meta page: after the page header, magic 4, version 4, page size
// 4, flags 4, root bucket 16, freelist 8, high-water mark 8, txid 8, and
// the FNV-64a of those 56 bytes.
const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2
	metaSummed  = 56
)

// checkMeta says what is wrong with the file's two meta pages, or "". A
// healthy file has both valid: each commit rewrites one, alternately. When
// the newer one is damaged, bbolt silently opens the file at the
// transaction before it; the last transaction — a revocation, say — is
// lost. (A torn write cannot do this: the 80 bytes that matter lie in the
// page's first disk sector.)
//
// With both sound, newest is the one bbolt opens: the one of the higher
// transaction ID.
func checkMeta(f *os.File, pageSize uint64) (newest meta, problem string) {
	for id := range uint64(2) {
		page := make([]byte, pageHeader+metaSummed+8)
		if _, err := f.ReadAt(page, int64(id*pageSize)); err != nil {
			return meta{}, fmt.Sprintf("meta page %d: %v", id, err)
		}
		b := page[pageHeader:]
		h := fnv.New64a()
		_, _ = h.Write(b[:metaSummed])
		switch {
		// The checksum covers the meta fields, not the page header: one
		// meta page copied over the other passes it, and makes bbolt
		// open the older transaction.
		case binary.NativeEndian.Uint64(page) != id || binary.NativeEndian.Uint16(page[8:]) != metaPage:
			return meta{}, fmt.Sprintf("meta page %d is damaged (its header says page %d, flags %#x)", id, binary.NativeEndian.Uint64(page), binary.NativeEndian.Uint16(page[8:]))
		case binary.NativeEndian.Uint32(b) != boltMagic:
			return meta{}, fmt.Sprintf("meta page %d is damaged (no bbolt magic number)", id)
		case binary.NativeEndian.Uint32(b[4:]) != boltVersion:
			return meta{}, fmt.Sprintf("meta page %d is damaged (version %d)", id, binary.NativeEndian.Uint32(b[4:]))
		case h.Sum64() != binary.NativeEndian.Uint64(b[metaSummed:]):
			return meta{}, fmt.Sprintf("meta page %d is damaged (checksum mismatch)", id)
		}
		// magic 4, version 4, page size 4, flags 4, root 16, then freelist 8, hwm 8, txid 8.
		m := meta{freelist: binary.NativeEndian.Uint64(b[32:]), hwm: binary.NativeEndian.Uint64(b[40:]), txid: binary.NativeEndian.Uint64(b[48:])}
		if id == 0 || m.txid > newest.txid {
			newest = m
		}
	}
	return newest, ""
}

// meta is what Open needs of a meta page: its freelist page, its
// high-water mark (the count of pages in use) and its transaction ID.
type meta struct{ freelist, hwm, txid uint64 }

// synced is false when the meta names no freelist page: the writer ran
// with NoFreelistSync and did not close cleanly, and bbolt rebuilds the
// freelist by walking every page in a goroutine of its own, where a
// damaged page is a fault that ends the process: such a file must pass
// checkPages first.
func (m meta) synced() bool { return m.freelist != ^uint64(0) }

// The walk reads the pages of a level of the tree in page order, a run
// of nearby pages at a time: pages at most readGap pages apart share a
// read (the pages between, free or of another level, are read and
// skipped), and a read holds at most readMax bytes. Reading page by page
// in the tree's order cost a syscall or two per page at random places in
// the file: 160 ms with the 1M-token file (86,000 pages) in the page
// cache, 3 s cold, where reading the file in order takes 0.2 s. In runs:
// 0.11 s and 0.35 s (docs/performance.md).
const (
	readGap = 32
	readMax = 2 << 20
)

type pageWalker struct {
	f             *os.File
	pageSize, hwm uint64
	seen          pageSet // the pages below hwm the walk reached
	problems      []string
	// shape: check only what bbolt's descent follows (branch pages, and
	// the root bucket's leaves, which hold the buckets), and of every
	// other leaf its header and first key (see treeSound); of such a leaf
	// no overflow page past its first key is read.
	shape bool

	// The pages the level being walked leads to.
	next []pageRef
	// seed keys the hashes of branch keys (pageRef.key): chosen at
	// random by each walk, so that no file can be made to collide.
	seed maphash.Seed
	// buf holds the pages [bufFrom, bufFrom+bufPages) of the file, as
	// read by fill; extra the pages pageBytes had to read apart.
	buf, extra        []byte
	bufFrom, bufPages uint64
}

// pageRef is a page the walk has yet to read: its id, the nesting of the
// bucket it belongs to (0: the root bucket), and, when a branch element
// led to it (hasKey), that element's key, as its maphash: the page's
// first key must hash the same. A copy of the keys instead cost memory in
// proportion to the file: one key per page of the widest level, twice
// over (the level walked and the next), which a subjects index of long
// subjects made a sizeable part of the file; a hash is 8 bytes.
type pageRef struct {
	id     uint64
	key    uint64
	depth  int32
	hasKey bool
}

// pageSet is a set of page IDs below a file's high-water mark, a bit per
// page: 11 KB for the 1M-token file's 86,000 pages.
type pageSet []uint64

func newPageSet(hwm uint64) pageSet { return make(pageSet, (hwm+63)/64) }

func (s pageSet) has(id uint64) bool { return s[id/64]&(1<<(id%64)) != 0 }

func (s pageSet) add(id uint64) { s[id/64] |= 1 << (id % 64) }

func (w *pageWalker) add(format string, args ...any) {
	w.problems = append(w.problems, "bbolt: "+fmt.Sprintf(format, args...))
}

// walk walks the tree from root breadth first: each level is sorted by
// page id, checked against the range and the pages seen before (so a
// loop ends at the first page reached again), and read in runs (fill)
// before its pages are checked (page), which gives the next level.
func (w *pageWalker) walk(root uint64) {
	w.seed = maphash.MakeSeed()
	level := []pageRef{{id: root}}
	for len(level) > 0 {
		slices.SortFunc(level, func(a, b pageRef) int { return cmp.Compare(a.id, b.id) })
		todo := level[:0]
		for _, r := range level {
			switch {
			case r.id < 2 || r.id >= w.hwm:
				w.add("page %d: out of range [2, %d)", r.id, w.hwm)
			case w.seen.has(r.id):
				w.add("page %d: reached twice", r.id)
			default:
				w.seen.add(r.id)
				todo = append(todo, r)
			}
		}
		w.next = w.next[:0]
		for i := 0; i < len(todo); {
			from, j := todo[i].id, i+1
			for j < len(todo) && todo[j].id-todo[j-1].id <= readGap && (todo[j].id+1-from)*w.pageSize <= readMax {
				j++
			}
			w.fill(from, todo[j-1].id+1-from)
			for _, r := range todo[i:j] {
				w.page(r)
			}
			i = j
		}
		level, w.next = w.next, level[:0]
	}
}

// fill reads the pages [from, from+n) into buf in one ReadAt. Of a read
// that fails part way, buf keeps the pages read whole; pageBytes reads
// each of the others alone, and so names the page that could not be read.
func (w *pageWalker) fill(from, n uint64) {
	size := n * w.pageSize
	if uint64(cap(w.buf)) < size { // readMax, or the whole file when smaller
		w.buf = make([]byte, max(size, min(readMax, w.hwm*w.pageSize)))
	}
	got, _ := w.f.ReadAt(w.buf[:size], int64(from*w.pageSize))
	w.bufFrom, w.bufPages = from, uint64(got)/w.pageSize
}

// grow makes room in s for n more elements, doubling its capacity: of a
// level of 85,000 pages, append's growth by a quarter allocated five
// times the final size.
func grow[S ~[]E, E any](s S, n int) S {
	if cap(s)-len(s) >= n {
		return s
	}
	t := make(S, len(s), max(2*cap(s), len(s)+n, 64))
	copy(t, s)
	return t
}

// pageBytes returns the pages [id, id+n): from buf when it holds them,
// else read now (a page with overflow pages past the run, or one the run
// failed to read), into extra, valid until the next call.
func (w *pageWalker) pageBytes(id, n uint64) ([]byte, error) {
	if id >= w.bufFrom && id+n <= w.bufFrom+w.bufPages {
		at := (id - w.bufFrom) * w.pageSize
		return w.buf[at : at+n*w.pageSize], nil
	}
	size := n * w.pageSize
	if uint64(cap(w.extra)) < size {
		w.extra = make([]byte, size)
	}
	b := w.extra[:size]
	if _, err := w.f.ReadAt(b, int64(id*w.pageSize)); err != nil {
		return nil, err
	}
	return b, nil
}

// page checks the page r names, and queues the pages its elements lead
// to. A branch element's key must be its child's first key: bbolt keeps
// them equal, and relies on it: a write that rewrites the page finds its
// parent's element by it, and where they differ it adds an element
// instead, which leaves the old one pointing at the page the write freed;
// once that page is reused, the tree can loop (a stack overflow in
// bbolt's search).
func (w *pageWalker) page(r pageRef) {
	id := r.id
	p, err := w.pageBytes(id, 1)
	if err != nil {
		w.add("page %d: %v", id, err)
		return
	}
	if got := binary.NativeEndian.Uint64(p); got != id {
		w.add("page %d: says it is page %d", id, got)
		return
	}
	n := 1 + uint64(binary.NativeEndian.Uint32(p[12:]))
	if id+n > w.hwm {
		w.add("page %d: %d overflow pages run past the high-water mark %d", id, n-1, w.hwm)
		return
	}
	// Its overflow pages are the tree's too: no other page may be one,
	// nor may the freelist hold one (treeSound).
	for o := id + 1; o < id+n; o++ {
		if w.seen.has(o) {
			w.add("page %d: its overflow page %d is reached twice", id, o)
			return
		}
		w.seen.add(o)
	}
	// Of a leaf that holds no bucket, the shape walk needs the first key
	// alone: it reads no overflow page past it.
	leafOnly := w.shape && r.depth > 0 && binary.NativeEndian.Uint16(p[8:]) == leafPage
	need := n
	if leafOnly {
		need = 1
		if binary.NativeEndian.Uint16(p[10:]) > 0 {
			e := p[pageHeader:]
			end := pageHeader + uint64(binary.NativeEndian.Uint32(e[4:])) + uint64(binary.NativeEndian.Uint32(e[8:]))
			if end <= n*w.pageSize { // else the key is past the page: no match
				need = (end + w.pageSize - 1) / w.pageSize
			}
		}
	}
	if need > 1 {
		if p, err = w.pageBytes(id, need); err != nil {
			w.add("page %d: %v", id, err)
			return
		}
	}
	if r.hasKey && maphash.Bytes(w.seed, pageFirstKey(p)) != r.key {
		w.add("page %d: its first key is not the key its parent gives it", id)
		return
	}
	if !leafOnly {
		w.elements(p, id, int(r.depth))
	}
}

// pageFirstKey is the first key of the branch or leaf page in buf, or nil.
func pageFirstKey(buf []byte) []byte {
	if binary.NativeEndian.Uint16(buf[10:]) == 0 || len(buf) < pageHeader+pageElement {
		return nil
	}
	e := buf[pageHeader:]
	var pos, ksize uint64
	switch binary.NativeEndian.Uint16(buf[8:]) {
	case branchPage:
		pos, ksize = uint64(binary.NativeEndian.Uint32(e)), uint64(binary.NativeEndian.Uint32(e[4:]))
	case leafPage:
		pos, ksize = uint64(binary.NativeEndian.Uint32(e[4:])), uint64(binary.NativeEndian.Uint32(e[8:]))
	default:
		return nil
	}
	if pageHeader+pos+ksize > uint64(len(buf)) {
		return nil
	}
	return buf[pageHeader+pos : pageHeader+pos+ksize]
}

// elements checks the page in buf (a page, or an inline bucket's), and
// queues the pages it leads to for the next level.
func (w *pageWalker) elements(buf []byte, id uint64, depth int) {
	if depth > maxNesting {
		w.add("page %d: buckets nested deeper than %d", id, maxNesting)
		return
	}
	if len(buf) < pageHeader {
		w.add("page %d: inline page of %d bytes", id, len(buf))
		return
	}
	flags, count := binary.NativeEndian.Uint16(buf[8:]), int(binary.NativeEndian.Uint16(buf[10:]))
	if pageHeader+count*pageElement > len(buf) {
		w.add("page %d: %d elements do not fit", id, count)
		return
	}
	// Checked whatever the count: bbolt's cursor does not look at it on
	// its way down, and follows a branch page's first element slot even
	// when the page has none (to the page itself: a First that never
	// returns). bbolt writes no empty branch page.
	switch {
	case flags != branchPage && flags != leafPage:
		w.add("page %d: neither a branch nor a leaf (flags %#x)", id, flags)
		return
	case flags == branchPage && count == 0:
		w.add("page %d: a branch page with no elements", id)
		return
	}
	// Keys in strictly ascending order: bbolt finds a child by binary
	// search, and a write that misses the element of a page it rewrites
	// adds one, leaving the old one on a freed page (see page).
	var prev []byte
	ordered := func(i int, key []byte) bool {
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			w.add("page %d: element %d's key is not after element %d's", id, i, i-1)
			return false
		}
		prev = key
		return true
	}
	for i := range count {
		at := uint64(pageHeader + i*pageElement)
		e := buf[at:]
		switch flags {
		case branchPage:
			pos, ksize := uint64(binary.NativeEndian.Uint32(e)), uint64(binary.NativeEndian.Uint32(e[4:]))
			if at+pos+ksize > uint64(len(buf)) {
				w.add("page %d: element %d runs past the page", id, i)
				return
			}
			if !ordered(i, e[pos:pos+ksize]) {
				return
			}
			w.next = grow(w.next, 1)
			w.next = append(w.next, pageRef{id: binary.NativeEndian.Uint64(e[8:]), depth: int32(depth), key: maphash.Bytes(w.seed, e[pos:pos+ksize]), hasKey: true})
		case leafPage:
			pos, ksize, vsize := uint64(binary.NativeEndian.Uint32(e[4:])), uint64(binary.NativeEndian.Uint32(e[8:])), uint64(binary.NativeEndian.Uint32(e[12:]))
			if at+pos+ksize+vsize > uint64(len(buf)) {
				w.add("page %d: element %d runs past the page", id, i)
				return
			}
			if !ordered(i, e[pos:pos+ksize]) {
				return
			}
			if binary.NativeEndian.Uint32(e)&bucketLeaf == 0 {
				continue
			}
			v := buf[at+pos+ksize : at+pos+ksize+vsize]
			if len(v) < bucketHeader {
				w.add("page %d: element %d: bucket header of %d bytes", id, i, len(v))
				return
			}
			if root := binary.NativeEndian.Uint64(v); root != 0 {
				w.next = grow(w.next, 1)
				w.next = append(w.next, pageRef{id: root, depth: int32(depth) + 1})
			} else {
				w.elements(v[bucketHeader:], id, depth+1)
			}
		}
	}
}
