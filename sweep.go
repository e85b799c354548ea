package tokenstore

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Sweep deletes every token whose deadline has passed, in transactions
// sized to hold bbolt's writer lock about 6 ms each so that other writers
// never wait long (about 0.5 s for 100,000 expired tokens among 1M), and
// returns how many it deleted. It stops between
// transactions when ctx is done or the store closes, returning the count
// so far and ctx's error or [ErrClosed]; the next sweep finishes what it
// began. The background sweeper runs the same pass every
// Options.SweepInterval.
//
// Its cost follows the expired tokens, not the file: it walks an index
// ordered by deadline from its start to now.
func (db *DB) Sweep(ctx context.Context) (int, error) {
	if err := db.begin(ctx, true); err != nil {
		return 0, wrap("sweep", err)
	}
	return db.sweep(ctx)
}

// A sweep deletes each bucket's entries in that bucket's key order.
// Deleted token by token, in deadline order, every token rewrote a page of
// its own in each of the tokens and subjects trees (their keys are random
// to the deadline): 100,000 expired tokens among 1M took 17 to 19.5 s in
// transactions of 8 ms. So a sweep first reads what is due (sweepScan),
// then deletes in four passes, each in the key order of one bucket and in
// transactions of about txTarget, so that neighbouring entries share the
// page rewrites: subjects, then records, then ids, then expiry entries
// (with the re-filing of tokens alive by a later use).
//
// The order keeps every reader's path whole: List, RevokeSubject and the
// per-subject limit go through subjects, gone first; Validate and Lookup go
// through a record to its ids entry, and records go before ids entries.
// Between passes Get, RevokeID and ForEach may meet an ids entry whose
// record is gone: the meta key "sweeping", set by the first transaction and
// removed by the last, says that such an entry is being swept (NotFound),
// not damage (ErrCorrupt); Check accepts these half-swept tokens while it
// is set. A sweep cut short (Close, a crash, ctx) leaves the key and the
// expiry entries of what it had not finished: the next sweep finds them
// again and finishes. The key holds the cut sweep's clock (uint64 ms): a
// sweep that finds it scans up to that clock when the present one reads
// earlier (set back across a restart), or it would find nothing due, call
// the sweep whole and leave records without their subjects entry (valid
// by the earlier clock, missed by List and RevokeSubject) and ids entries
// without their record (ErrCorrupt). Past the present clock it finishes
// only what the cut sweep began (a record gone, or its subjects entry
// gone); any other token is judged by the present clock.
var metaSweeping = []byte("sweeping")

// sweepScanMax bounds the tokens one round of a sweep holds in memory
// (a variable for the tests).
var sweepScanMax = 200_000

// sweepItem is one expiry entry due, and what the passes delete or move.
type sweepItem struct {
	key     []byte // the expiry entry
	id      []byte // nil: a dangling expiry entry, only key is deleted
	h       Hash   // when record is set, or keep
	subject []byte // subjects key; nil when the record is gone, or a cut sweep deleted the key (finished whatever its uses)
	record  bool   // the record is still there
	keep    bool   // alive until refile: the token is re-filed, not deleted
	refile  int64  // with keep: its deadline, any time (0 and before 1970 included)
	used    int64  // with keep: the latest use, written with it
	skip    bool   // a record known to be damaged: left as it is
	family  []byte // its families entry (family.go), deleted with its subjects entry; nil for none
}

func (db *DB) sweep(ctx context.Context) (int, error) {
	// One sweep at a time; a caller's Sweep waits for the background one
	// only as long as its ctx lets it.
	select {
	case db.sweeping <- struct{}{}:
		defer func() { <-db.sweeping }()
	case <-ctx.Done():
		return 0, wrap("sweep", ctx.Err())
	}
	start := time.Now()
	now := db.nowMs()
	to, cut := now, false // the scan's end: see metaSweeping
	if since, ok := db.sweepingSince(); ok {
		to, cut = max(now, since), true
	}
	total := 0
	var found damage // damaged records met for the first time
	defer func() {
		if r := recover(); r != nil {
			// A panic (a user's Logger) unwinds past every report: found
			// would be known damaged, stepped over by every later sweep,
			// and never returned nor logged. The next sweep reports it.
			db.damaged.remove(found)
			panic(r)
		}
	}()

	// Issue 17: tombstones due (tombstone.go); damaged ones are reported
	// with the records. Damage is reported once (later sweeps step over
	// it), so a sweep that stops on an error reports what it found with
	// that error.
	if err := db.sweepTombstones(ctx, now, &found); err != nil {
		short, err := db.sweepStopped(err, found, 0)
		if !short {
			db.log.Error("tokenstore: sweeping tombstones failed", "err", err)
		}
		return 0, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return total, wrap("sweep", errors.Join(err, found.err()))
		}
		due, marked := db.anyDue(to)
		if !due && !marked {
			break // nothing has expired: no write transaction at all
		}
		var n int
		var more bool
		var bad damage
		err := func() error {
			// Until the mark (see cache.go): sweepApply's mark closes
			// it, or there was none; closed here also when a panic
			// unwinds (a user's Logger), for held, no clean entry was
			// dropped again.
			db.cache.holdClean(true)
			defer db.cache.holdClean(false)
			scan := time.Now()
			var items []*sweepItem
			var err error
			items, more, bad, err = db.sweepScan(to, now, cut)
			db.log.Debug("tokenstore: sweep scan", "due", len(items), "took", time.Since(scan))
			db.forget(bad)
			found = append(found, db.damaged.addNew(bad)...)
			if err == nil && (len(items) > 0 || marked) { // damaged records alone open no write transaction
				n, err = db.sweepApply(ctx, to, now, items)
			}
			return err
		}()
		total += n
		if err != nil {
			short, err := db.sweepStopped(err, found, total)
			if !short {
				db.log.Error("tokenstore: sweep failed", "deleted", total, "err", err)
			}
			return total, err
		}
		if !more {
			break
		}
	}
	// Whole: every token a cut sweep had decided to delete is gone (or
	// was deleted meanwhile), so its marks have nothing left to hold.
	db.releaseCutMarks()
	if total > 0 {
		db.log.Info("tokenstore: swept expired tokens", "deleted", total, "took", time.Since(start))
	}
	if err := found.err(); err != nil {
		// Reported once: later sweeps step over these records.
		err = wrap("sweep", err)
		db.log.Error("tokenstore: sweep skipped damaged records; run check", "deleted", total, "damaged", len(found), "err", err)
		return total, err
	}
	return total, nil
}

// sweepStopped wraps err, which stopped a sweep after it deleted total
// tokens, with the damage it found, and reports whether Close or the
// caller's ctx cut it short between its transactions with no damage
// found: no failure (the next sweep finishes: see metaSweeping), logged
// here at Info, where an error was logged by every shutdown during a
// sweep. Otherwise the caller logs the failure.
func (db *DB) sweepStopped(err error, found damage, total int) (short bool, _ error) {
	err = wrap("sweep", errors.Join(boltErr(err), found.err()))
	if found == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed)) {
		db.log.Info("tokenstore: sweep cut short", "deleted", total, "err", err)
		return true, err
	}
	return false, err
}

// sweepScan reads up to sweepScanMax expiry entries filed at or before to
// (now, or a cut sweep's later clock: see metaSweeping),
// in one read transaction, and says for each what the passes do. An
// entry's deadline is a lower bound (bucket.go): a token whose uses,
// stored or in memory, keep it alive is to be re-filed.
//
// It reads in read transactions of sweepScanTx entries: a long read
// transaction would hold up a writer that must grow the file (bbolt
// remaps it only when no reader is open).
//
// A record that does not decode costs only itself: it is left as it is,
// with its entries, and returned in bad; records known to be damaged
// (db.damaged) are stepped over unread.
func (db *DB) sweepScan(to, now int64, cut bool) (items []*sweepItem, more bool, bad damage, err error) {
	var after []byte
	var keys []byte       // see sweepKeys
	var block []sweepItem // see sweepKeys
	for done := false; !done && err == nil; {
		done = true
		err = view(db.bolt, func(tx *bolt.Tx) error {
			n := 0
			r := sweepReader{
				db: db, now: now, cut: cut,
				ids:      tx.Bucket(bucketIDs).Cursor(),
				tokens:   tx.Bucket(bucketTokens).Cursor(),
				subjects: tx.Bucket(bucketSubjects),
			}
			c := tx.Bucket(bucketExpiry).Cursor()
			k, _ := c.First()
			if after != nil {
				if k, _ = c.Seek(after); k != nil && string(k) == string(after) {
					k, _ = c.Next()
				}
			}
			for ; k != nil; k, _ = c.Next() {
				if len(k) == expiryKeyLen && expiryKeyDeadline(k) > to {
					return nil
				}
				if len(items) == sweepScanMax {
					more = true
					return nil
				}
				if n == sweepScanTx {
					done = false
					return nil
				}
				n++
				if cap(keys)-len(keys) < len(k) {
					keys = make([]byte, 0, max(sweepKeys*expiryKeyLen, len(k)))
				}
				at := len(keys)
				keys = append(keys, k...)
				after = keys[at:len(keys):len(keys)]
				it, err := r.entry(after)
				var d *damagedRecord
				if errors.As(err, &d) {
					bad = append(bad, d)
					continue
				}
				if err != nil {
					return err
				}
				if !it.skip {
					if len(block) == cap(block) {
						block = make([]sweepItem, 0, sweepKeys)
					}
					block = append(block, it)
					items = append(items, &block[len(block)-1])
				}
			}
			return nil
		})
	}
	return items, more, bad, err
}

// sweepKeys is how many expiry keys sweepScan copies into one buffer, and
// how many items it keeps in one block: cloned one by one, the keys of a
// 100,000-token sweep were as many allocations, and a []sweepItem grown
// by append copied itself at each doubling (368 MB allocated by a sweep
// that read 500,000 entries: Sweep/100k-of-1M-scattered). An item's key
// and id are slices of a buffer, and items point into their block, so
// that both live until the sweep's passes end.
const sweepKeys = 4096

// sweepScanTx is the expiry entries one read transaction of sweepScan
// reads: about 30 ms of work (a variable for the tests).
var sweepScanTx = 8192

// sweepReader reads, in one read transaction of sweepScan, what the
// passes do with each expiry entry. Its cursors are opened once per read
// transaction: a Bucket.Get, or recordOf's Cursor, per entry allocated a
// cursor and its stack each time (three per token).
type sweepReader struct {
	db       *DB
	now      int64
	cut      bool // a sweep was cut short (metaSweeping): a record without its subjects entry is one it began deleting
	ids      *bolt.Cursor
	tokens   *bolt.Cursor
	subjects *bolt.Bucket
}

// entry says what the passes do with the expiry entry k.
func (r *sweepReader) entry(k []byte) (sweepItem, error) {
	db, now := r.db, r.now
	it := sweepItem{key: k}
	if len(k) != expiryKeyLen {
		return it, nil
	}
	v := getAt(r.ids, k[8:])
	if v == nil {
		return it, nil // dangling
	}
	e, err := decodeIDValue(k[8:], v)
	if err != nil {
		// It costs only its token, as a damaged record does: returned as
		// an error, it stopped every sweep at it, for good, and no
		// token expired after it was ever deleted.
		return it, &damagedRecord{h: damagedIDsKey(k[8:]), id: uuid.UUID(k[8:]), err: err, idsEntry: true}
	}
	if e.filed != expiryKeyDeadline(k) {
		return it, nil // not the token's entry: a leftover
	}
	it.id = k[8:]
	h, rv := recordAt(r.tokens, k[8:], &e)
	if rv == nil {
		return it, nil // a sweep cut short deleted the record; the rest goes now
	}
	if db.damaged.has(h[:]) {
		return sweepItem{skip: true}, nil
	}
	rec, err := decodeRecord(rv)
	if err != nil {
		return it, &damagedRecord{h: h, id: uuid.UUID(k[8:]), err: err}
	}
	it.h, rec.lastUsed = h, e.used
	used := e.used
	if rec.policy.kind != kindAbsolute {
		// A use in memory may keep it alive. An Absolute token's deadline
		// does not move with its uses: the cache's lock, taken once per
		// token, is spared, for the Validates beside the sweep take the
		// same shard locks. In a runtime trace of Sweep/100k-of-1M
		// (100,000 Absolute tokens), the Validate goroutine lost 60 to
		// 70 ms to sync.Mutex handoffs on these locks during the sweep
		// (with the deletes' own already batched: cache.deleteAll), and
		// none without them.
		used, _ = db.cache.lastUse(h, &rec)
	}
	// A cut sweep began deleting it (see metaSweeping): its subjects
	// entry went in that sweep's first pass, with its families entry. It
	// is finished whatever its uses or the present clock: re-filed, it
	// would live on without its subjects entry, missed by List and
	// RevokeSubject. Whatever its filed deadline, and also when the cut
	// sweep's clock reads no later than the present one: a use noted
	// after the cut (a Validate whose clock read before the deadline)
	// kept it alive all the same, before the cut sweep's marks were kept
	// (DB.holdCutMarks); and a clock set back may make it alive by its
	// filed deadline.
	begun := r.cut && r.subjects.Get(subjectKey(rec.subject, rec.id)) == nil
	if d := rec.deadlineAt(used); now < d && !begun {
		if d == e.filed {
			return sweepItem{skip: true}, nil // filed exact, due later
		}
		it.keep, it.refile, it.used = true, d, used
		return it, nil
	}
	it.record = true
	if !begun { // nil: finished whatever a use since does (sweepApply)
		it.subject = subjectKey(rec.subject, rec.id)
	}
	it.family = rec.familyTokenKey() // issue 17: family.go
	return it, nil
}

// sweepApply runs the four passes over items, which sweepScan judged at
// the clock now, and returns the tokens it deleted. to is the scan's end
// (see metaSweeping).
func (db *DB) sweepApply(ctx context.Context, to, now int64, items []*sweepItem) (deleted int, err error) {
	// Counted however the passes end: deleted holds only what committed
	// (sweepPass), and a sweep cut short after the records pass leaves
	// records that the next sweep finds gone and does not count again.
	defer func() { db.ctr.swept.Add(uint64(deleted)) }()
	// While the passes run, Validate and Lookup of these tokens answer
	// them expired (or not found, once gone), and nothing of them stays
	// cached afterwards. The mark is the sweep's decision (see cache.go):
	// a token kept alive by a use noted since the scan read it is
	// re-filed instead; a token a cut sweep began deleting (subject nil)
	// is finished whatever its uses.
	var hs, finish []Hash
	for _, it := range items {
		switch {
		case it.id == nil || it.keep || !it.record:
		case it.subject == nil:
			finish = append(finish, it.h)
		default:
			hs = append(hs, it.h)
		}
	}
	if alive := db.cache.beginSweepAll(hs, now); len(alive) > 0 {
		by := make(map[Hash]sweptAlive, len(alive))
		for _, a := range alive {
			by[a.h] = a
		}
		for _, it := range items {
			if a, ok := by[it.h]; ok && it.record && it.subject != nil {
				it.keep, it.refile, it.used = true, a.deadline, a.used
			}
		}
		hs = slices.DeleteFunc(hs, func(h Hash) bool { _, ok := by[h]; return ok })
	}
	if len(finish) > 0 {
		db.cache.beginDeleteAll(finish)
		hs = append(hs, finish...)
	}
	db.cache.holdClean(false) // every use noted since the scan is judged

	gone := make([]*sweepItem, 0, len(items)) // tokens to delete
	for _, it := range items {
		if it.id != nil && !it.keep {
			gone = append(gone, it)
		}
	}
	// Those whose records pass committed are gone; the others (the sweep
	// cut short, or a transaction failed) keep what the cache holds of
	// them: a successor's first use among it (cache.endDelete).
	//
	// Those kept hold their mark until a sweep is whole (cutMarks): the
	// decision stands, and a Validate descheduled between its clock read,
	// before the deadline, and its use would otherwise land after the cut,
	// answer valid, and keep alive a token whose subjects entry the cut
	// sweep may have deleted.
	dropped, kept := []Hash(nil), hs // until the records pass has run
	defer func() {
		db.cache.endDeleteAll(dropped, true)
		db.holdCutMarks(kept)
	}()
	mark := func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaSweeping, beAppend64(nil, uint64(to))) }

	// Each pass deletes through one cursor per transaction (deleteAt): a
	// Bucket.Delete opens a cursor of its own for every key.
	var cur *bolt.Cursor // of the pass's transaction (its begin opens it)
	slices.SortFunc(gone, func(a, b *sweepItem) int { return compareBytes(a.subject, b.subject) })
	err = db.sweepPass(ctx, passSubjects, gone, func(tx *bolt.Tx, it *sweepItem) (bool, error) {
		if err := deleteFamilyKey(tx, it.family); err != nil {
			return false, err
		}
		if it.subject == nil {
			return it.family != nil, nil
		}
		did, err := deleteAt(cur, it.subject)
		return did || it.family != nil, err
	}, func(tx *bolt.Tx) error {
		cur = tx.Bucket(bucketSubjects).Cursor()
		return mark(tx)
	}, nil)
	if err != nil {
		return 0, err
	}
	slices.SortFunc(gone, func(a, b *sweepItem) int { return compareBytes(a.h[:], b.h[:]) })
	seen, done := 0, 0 // items of gone the pass's transactions saw, and those that committed
	err = db.sweepPass(ctx, passRecords, gone, func(tx *bolt.Tx, it *sweepItem) (bool, error) {
		seen++
		// One search for the lookup and the delete (deleteAt), not a Get
		// and a Delete: on Sweep/100k-of-1M the pass's work under the
		// writer lock fell from 0.23 to 0.13 s of CPU. Not there: revoked
		// meanwhile, or deleted by a sweep cut short.
		did, err := deleteAt(cur, it.h[:])
		if did {
			deleted++
		}
		return did, err
	}, func(tx *bolt.Tx) error {
		cur = tx.Bucket(bucketTokens).Cursor()
		seen = done
		tx.OnCommit(func() { done = seen })
		return mark(tx)
	}, &deleted)
	if err == nil { // every transaction of the pass committed
		dropped, kept = hs, nil
	} else {
		dropped, kept = make([]Hash, 0, len(hs)), nil
		for i, it := range gone {
			switch {
			case !it.record:
			case i < done:
				dropped = append(dropped, it.h)
			default:
				kept = append(kept, it.h)
			}
		}
	}
	if err != nil {
		return deleted, err
	}
	slices.SortFunc(gone, func(a, b *sweepItem) int { return compareBytes(a.id, b.id) })
	err = db.sweepPass(ctx, passIDs, gone, func(tx *bolt.Tx, it *sweepItem) (bool, error) {
		return deleteAt(cur, it.id)
	}, func(tx *bolt.Tx) error {
		cur = tx.Bucket(bucketIDs).Cursor()
		return mark(tx)
	}, nil)
	if err != nil {
		return deleted, err
	}
	var expiry, ids *bolt.Bucket
	var idsCur *bolt.Cursor
	var raised int64 // the latest use this transaction wrote to usedmax (from math.MinInt64: a use before 1970 raises it too)
	err = db.sweepPass(ctx, passExpiry, items, func(tx *bolt.Tx, it *sweepItem) (bool, error) {
		if !it.keep {
			return deleteAt(cur, it.key)
		}
		// Alive by a use since it was filed: file it under its real
		// deadline, and write the use with it, unless it went meanwhile.
		v := getAt(idsCur, it.id)
		if v == nil {
			return deleteAt(cur, it.key)
		}
		e, err := decodeIDValue(it.id, v)
		if err != nil {
			return false, err
		}
		if !e.of(it.h) || e.filed != expiryKeyDeadline(it.key) {
			return false, nil // moved meanwhile by someone else
		}
		var raise error
		if it.used > raised { // usedmax read only when a use is later than any this transaction wrote: not once per token
			raised, raise = it.used, raiseUsedMax(tx, it.used)
		}
		_, del := deleteAt(cur, it.key)
		return true, errors.Join(
			del,
			expiry.Put(expiryKey(it.refile, uuid.UUID(it.id)), []byte{}),
			ids.Put(it.id, idValue(it.id, it.h, max(e.used, it.used), it.refile)),
			raise,
		)
	}, func(tx *bolt.Tx) error {
		expiry, ids = tx.Bucket(bucketExpiry), tx.Bucket(bucketIDs)
		cur, idsCur, raised = expiry.Cursor(), ids.Cursor(), math.MinInt64
		return mark(tx)
	}, nil)
	if err != nil {
		return deleted, err
	}
	// The last transaction: the sweep is whole again.
	if err := db.commit.runSolo(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaSweeping) }); err != nil {
		return deleted, err
	}
	// The re-filed tokens' uses are in the file now: by persistedAll,
	// which takes each shard's lock once per call (see deleteAll), in calls
	// of refiledBatch tokens.
	var refiled, scratch []touch
	for _, it := range items {
		if it.keep {
			refiled = append(refiled, touch{h: it.h, used: it.used})
		}
		if len(refiled) == refiledBatch {
			db.cache.persistedAll(refiled, &scratch)
			refiled = refiled[:0]
		}
	}
	db.cache.persistedAll(refiled, &scratch)
	return deleted, nil
}

// holdCutMarks keeps the sweep's marks of hs, tokens of a sweep cut short
// before their records went, until a sweep is whole (releaseCutMarks):
// Validate, Lookup and Rotate answer them expired meanwhile, as they did
// from the mark on. A token already held keeps one mark, so that sweeps
// cut again and again hold at most one mark a token. Called under
// db.sweeping, as releaseCutMarks is.
func (db *DB) holdCutMarks(hs []Hash) {
	var again []Hash
	for _, h := range hs {
		if _, ok := db.cutMarks[h]; ok {
			again = append(again, h)
			continue
		}
		if db.cutMarks == nil {
			db.cutMarks = make(map[Hash]struct{})
		}
		db.cutMarks[h] = struct{}{}
	}
	db.cache.endDeleteAll(again, false)
}

// releaseCutMarks ends the marks holdCutMarks kept: a sweep is whole, so
// each of those tokens is gone (its entry was dropped when its delete
// committed) or was found alive by a clock set back and re-filed with
// its subjects entry.
func (db *DB) releaseCutMarks() {
	if len(db.cutMarks) == 0 {
		return
	}
	hs := make([]Hash, 0, len(db.cutMarks))
	for h := range db.cutMarks {
		hs = append(hs, h)
	}
	db.cutMarks = nil
	db.cache.endDeleteAll(hs, false)
}

// refiledBatch is the re-filed tokens sweepApply reports to the cache in
// one persistedAll call: about deleteBatch per shard.
const refiledBatch = deleteBatch * cacheShards

// getAt is Bucket.Get through c, without the cursor Get allocates: k's
// value, or nil when k is not there (or holds a bucket).
func getAt(c *bolt.Cursor, k []byte) []byte {
	if got, v := c.Seek(k); got != nil && string(got) == string(k) {
		return v
	}
	return nil
}

// deleteAt deletes k through c, when there: Bucket.Delete without the
// cursor it allocates. It reports whether k was there.
func deleteAt(c *bolt.Cursor, k []byte) (bool, error) {
	if got, _ := c.Seek(k); got == nil || string(got) != string(k) {
		return false, nil
	}
	return true, c.Delete()
}

// sweepPass applies fn to items, in their order, in write transactions
// sized by the pass's sizer (sizedTx); each transaction first runs begin. fn reports
// whether it wrote (false: its entries had gone meanwhile, a search and
// no more). The sizer learns only from transactions in which every item
// wrote: one whose items had gone (revoked after the scan, or deleted by
// a sweep cut short that this one finishes) cost a few µs each, and,
// learned from, grew the pass's size 2× a transaction (64 to 1024 in a
// sweep of 1,280 revoked tokens), kept for the next sweep's real deletes. deleted,
// when not nil, counts the records fn deletes: the pass lowers the meta
// count by them once per transaction (not once per record: a Get and a Put
// of the meta bucket each), and reports them per transaction.
func (db *DB) sweepPass(ctx context.Context, pass int, items []*sweepItem, fn func(*bolt.Tx, *sweepItem) (bool, error), begin func(*bolt.Tx) error, deleted *int) error {
	sizer := &db.sweepSize[pass]
	for len(items) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if db.closed.Load() {
			// Close does not cancel a caller's ctx; it stops the sweep
			// here, cut short as by ctx (see metaSweeping), rather than
			// racing Close's last flush for the writer lock.
			return ErrClosed
		}
		chunk := items[:min(len(items), sizer.most())]
		before := 0
		if deleted != nil {
			before = *deleted
		}
		t := time.Now()
		st, err := db.sizedTx(sizer, func(tx *bolt.Tx, b *txBudget) (done, wrote int, err error) {
			if err := begin(tx); err != nil {
				return 0, 0, err
			}
			// wrote: the items that wrote (fn); fewer than it took, the
			// sizer learns nothing.
			for done < len(chunk) && !b.over(done) {
				did, err := fn(tx, chunk[done])
				if err != nil {
					return 0, 0, err
				}
				done++
				if did {
					wrote++
				}
			}
			if deleted != nil && *deleted > before {
				return done, wrote, addCount(tx, -int64(*deleted-before))
			}
			return done, wrote, nil
		})
		took := time.Since(t)
		chunk = chunk[:st.done]
		items = items[len(chunk):]
		if err != nil && deleted != nil {
			*deleted = before // rolled back, or its commit failed: it deleted nothing
		}
		n := 0
		if deleted != nil {
			n = *deleted - before
		}
		db.log.Debug("tokenstore: sweep transaction", "pass", pass, "deleted", n, "size", len(chunk), "took", took, "held", st.held, "io", st.io, "written", st.pages)
		if err != nil {
			return err
		}
	}
	return nil
}

// A sweep does not pause between its transactions, as the flush does.
// Paused twice as long as each took (tried in 0a489e5, removed), the
// Validates beside Sweep/100k-of-1M were not slowed less: in the same
// runs, 597-1,200 of them more than 1% took longer than the p99 without
// the sweep, against 119-468 unpaced, and the p99 ratio read 1.6-2.4x
// against 1.2-2.2x; a lower ratio seen before came from the calls made
// during the pauses diluting the slow ones. What slows them is the disk's
// fsyncs, from whatever process (Store/Interference), and a paced sweep
// makes as many, over a longer time. See docs/performance.md.

// anyDue reports whether a token's filed deadline is at or before now,
// reading only the first key of the expiry index, and whether a sweep was
// cut short (metaSweeping). A sweep that finds neither writes nothing; a
// write transaction, even an empty one, costs an fsync.
func (db *DB) anyDue(now int64) (due, marked bool) {
	due = true // on an error, let the sweep report it
	_ = view(db.bolt, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketExpiry); b != nil {
			k, _ := b.Cursor().First()
			due = k != nil && (len(k) != expiryKeyLen || expiryKeyDeadline(k) <= now)
		}
		if m := tx.Bucket(bucketMeta); m != nil {
			marked = m.Get(metaSweeping) != nil
		}
		return nil
	})
	return due, marked
}

// sweepingSince is the clock of a sweep cut short (metaSweeping), and
// whether there was one: a clock of 0 (or before 1970) is a clock like
// any other (read as "none", it made the scan's end 0 for a clock before
// 1970).
func (db *DB) sweepingSince() (ms int64, ok bool) {
	_ = view(db.bolt, func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if v := m.Get(metaSweeping); v != nil {
				ms, ok = int64(beUint64(v)), true
			}
		}
		return nil
	})
	return ms, ok
}

// txTarget is how long one flush transaction should hold bbolt's single
// writer lock, which every Issue, Revoke and use written waits for (and
// the least a sweep transaction sizes its work for: sweepHold).
//
// 4 ms, not the 8 ms it was: on the 2-core benchmark machine, with one
// goroutine validating in a loop beside the flush, a transaction that
// holds the lock for 9 ms of work now and then loses its core for a Go
// scheduler slice or a garbage collection's mark phase (10 ms or more)
// and holds the lock 24-60 ms; an Issue arriving then waits as long (the
// disk's fdatasync takes 0.14 ms at the median, 0.7 ms at most, when the
// machine is quiet, so it is not the fsyncs). Shorter, fewer transactions
// are caught so and each is shorter. With the flush sized by nextIO for
// sweepHold (6 ms, was 12), binaries alternated, 2 runs each:
// Flush/100k-of-1M-issue-wait, Issues waiting over 20 ms 5 per flush → 1,
// wait p99 12-15 → 7 ms, longest 32-34 → 21 ms; the flush took 1.6 →
// 1.3-1.8 s and wrote 712 → 714-723 bytes per use; behind the sweep
// (Sweep/100k-of-1M-issue-wait) the longest wait 16-19 → 6-15 ms, p99 9 →
// 6 ms, none over 20 ms either way, the sweep 0.45-0.49 s either way.
const txTarget = 4 * time.Millisecond

// fsyncBelieved is the longest fixed part (a commit's fsyncs) a sizer
// believes: a transaction's shortest recent time above it is its work.
// (It was 2 × txTarget; halving txTarget must not make a disk whose
// fsyncs take 12 ms look like one whose chunks are too big.)
const fsyncBelieved = 16 * time.Millisecond

// chunkSizer picks how many tokens the next sweep transaction takes, so
// that it holds the writer lock about sweepHold (nextIO), and how long its
// work may last before it takes no more (workCap): the cost of a token is
// not a constant.
// Among 10,000 tokens the ones a transaction deletes share their pages;
// among 1,000,000 each rewrites pages of its own (its record and its
// subject entry sit at random places in two B+trees, and bbolt copies a
// whole 4 KB leaf and its branches for one deleted key), and the disk
// decides the rest. Measured on 1M tokens (Sweep/10k-of-1M, 2 runs each):
//
//	fixed 1,000 per tx:    0.60-0.75 s, 91% of transactions over 20 ms, p99 73-106 ms, 7.2 KB written per token
//	sized for 15 ms:       1.0-1.4 s,   3-9% over 20 ms,  p99 31-33 ms, 9.5 KB/token
//	sized for 8 ms:        1.6 s,       0.5-1% over 20 ms, p99 17-22 ms, 10.8 KB/token
//
// Smaller transactions rewrite shared branch pages more often, so a sweep
// takes longer in all; it runs in the background, and writers waiting
// behind it is what users feel. The size is kept between sweeps; it is
// only used by the sweep holding db.sweeping.
//
// The flush uses one too (flushSize): a use written costs far less than a
// token deleted, so its bounds are higher. Each sweep pass has a sizer of
// its own. All size by nextIO (sweepsize.go). The flush had a sizer of its
// own, which took the shortest recent transaction's whole time as the
// fixed part (the fsyncs): that included its work, so where the fsyncs
// took longer than txTarget it let transactions grow to 1.5 × txTarget of
// work; nextIO takes the fixed part from bbolt's own write time.
type chunkSizer struct {
	n             int
	first, lo, hi int               // zero: the sweep's
	recent        [16]time.Duration // nextIO's: the io of the recent transactions
	perItem       [16]float64       // nextIO's: ns per item of the recent transactions
	share         [16]float64       // nextIO's: the recent transactions' work, a share of their time above the fixed part (workCap)
	seen          int
	cap           time.Duration // when set (tests), workCap's answer
}

// The first transactions ask for the most: workCap cuts them where their
// time runs out, and the sizer learns from what they took.
const (
	sweepChunkFirst = sweepChunkMax
	sweepChunkMin   = 32
	sweepChunkMax   = 65536 // a pass deletes neighbours: an item costs a few µs, not a page (sweepApply)

	flushChunkFirst = flushChunkMax
	flushChunkMin   = 128
	flushChunkMax   = 32768
)

func (c *chunkSizer) bounds() (first, lo, hi int) {
	if c.hi == 0 {
		return sweepChunkFirst, sweepChunkMin, sweepChunkMax
	}
	return c.first, c.lo, c.hi
}

// most is how many items the next transaction may take: its size, and
// more while no writer waits (extension), up to the upper bound.
func (c *chunkSizer) most() int {
	_, _, hi := c.bounds()
	return min(int(float64(c.get())*c.extension()), hi)
}

func (c *chunkSizer) get() int {
	if c.n == 0 {
		c.n, _, _ = c.bounds()
	}
	return c.n
}
