package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenstore/tokenstore/internal/backend"
	bolt "go.etcd.io/bbolt"
)

// DB is a token store on one bbolt file. It is safe for simultaneous use by
// multiple goroutines. Make one with [Open]; release it with [DB.Close].
type DB struct {
	bolt   *bolt.DB
	path   string
	format Format
	policy Policy
	now    func() time.Time
	touch  time.Duration
	limit  int
	log    *slog.Logger
	ro     bool
	// roReused: in a read-only store, the rotated-away tokens found reused
	// (rotate.go, reuse), whose grace the file cannot be told has ended:
	// a clock set back must not reopen it. At most one per tombstone the
	// file holds.
	roReused sync.Map
	// reuseLog rate-limits the reuse warnings per family (see
	// backend.ReuseLog): a stolen token replayed in a loop must not fill
	// the logs.
	reuseLog backend.ReuseLog

	fsyncReturning bool // Options.FsyncReturningUses

	cache     *cache
	commit    committer
	sweeping  chan struct{}     // holds one token while a sweep runs: one at a time, waited for with a ctx
	cutMarks  map[Hash]struct{} // tokens of a sweep cut short, marked until a sweep is whole (holdCutMarks); under sweeping
	sweepSize sweepSizers       // tokens per sweep transaction, by pass; used only by the sweep holding sweeping
	flushMu   sync.Mutex        // one flush at a time
	flushSize chunkSizer        // uses per flush transaction; under flushMu
	damaged   damagedSet        // records a sweep found damaged, stepped over after

	rotationKey []byte // derives successors (rotate.go); nil in a read-only store of an older file

	closed    atomic.Bool
	closing   chan struct{} // closed by Close, first: ends a caller's Flush pausing between transactions (pace)
	closeOnce sync.Once
	closeErr  error
	sweeper   *backend.Loop // the background sweeper; nil when off
	writer    *backend.Loop // the background writer of uses; nil when off

	ctr       counters
	lastCount atomic.Int64
	// usedMax is at least every last use the file holds or this process
	// has recorded (see readForUse): meta's usedmax at Open, raised by
	// every Validate.
	usedMax atomic.Int64
}

type counters struct {
	issued, revoked, swept               atomic.Uint64
	malformed, notFound, expired, reused atomic.Uint64
	touchWrites, touchesPersisted        atomic.Uint64
	validated, lookups, hits, misses     stripedCounter // every Validate's: see stripedCounter
}

// stripedCounter is a counter that every Validate and Lookup adds to, on
// whatever core: one atomic a cache shard, each on a cache line of its
// own, added to by the shard of the token checked, so that two cores
// checking different tokens do not pass one line back and forth on every
// call, as they did with counters side by side in one struct.
type stripedCounter struct {
	stripes [cacheShards]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

// add counts one for the token of shard i (cache.shardIndex).
func (c *stripedCounter) add(i int) { c.stripes[i].n.Add(1) }

// load is the count: the stripes are read one after the other, so calls
// counted meanwhile may be in it or not, as with one atomic read a moment
// earlier or later.
func (c *stripedCounter) load() (n uint64) {
	for i := range c.stripes {
		n += c.stripes[i].n.Load()
	}
	return n
}

// Open opens the token file at path, creating it (mode 0600) when it does
// not exist, and starts the background sweeper and writer. opts may be nil.
//
// Open returns [ErrLocked] when another process holds the file past
// Options.LockTimeout, and [ErrCorrupt] when the file is not a tokenstore
// file (another bbolt application's, garbage, a newer schema); such a file
// is not modified.
func Open(path string, opts *Options) (db *DB, err error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	format, err := NewFormat(o.Prefix)
	if err != nil {
		return nil, err
	}
	if o.Policy.IsZero() {
		o.Policy = defaultPolicy
	}
	if err := o.Policy.Validate(); err != nil {
		return nil, wrap("Options.Policy", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = defaultSweepInterval
	}
	if o.TouchInterval == 0 {
		o.TouchInterval = defaultTouchInterval
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.CacheSize == 0 {
		o.CacheSize = defaultCacheSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}

	if err := checkPathKind(path); err != nil {
		return nil, wrap("open "+path, err)
	}
	if o.ReadOnly {
		st, err := os.Stat(path)
		if err != nil {
			return nil, wrap("open "+path+" read-only", err)
		}
		if st.Size() == 0 { // bbolt would try to initialise it, and fail on the read-only descriptor
			return nil, wrap("open "+path+" read-only", fmt.Errorf("%w: the file is empty (open it once without ReadOnly)", ErrCorrupt))
		}
	}
	bdb, err := openBolt(path, &o)
	if err != nil {
		return nil, err
	}
	db = &DB{
		bolt:           bdb,
		path:           path,
		format:         format,
		policy:         o.Policy,
		now:            o.Now,
		touch:          o.TouchInterval,
		fsyncReturning: o.FsyncReturningUses,
		limit:          o.MaxTokensPerSubject,
		log:            o.Logger,
		ro:             o.ReadOnly,
		cache:          newCache(o.CacheSize),
		commit:         committer{db: bdb, reads: readTxs{db: bdb}},
		flushSize:      chunkSizer{first: flushChunkFirst, lo: flushChunkMin, hi: flushChunkMax},
		sweeping:       make(chan struct{}, 1),
		closing:        make(chan struct{}),
	}
	db.reuseLog.Pkg = "tokenstore"
	err = db.checkSchema()
	if err == nil {
		err = db.upgrade()
	}
	if err == nil {
		err = db.settlePrefix(o.Prefix)
	}
	if err == nil {
		err = db.openFamilies()
	}
	if err != nil {
		if !db.commit.wedged.Load() { // else bbolt's Close would wait for ever
			_ = bdb.Close()
		}
		return nil, wrap("open "+path, boltErr(err))
	}
	db.Stats() // primes lastCount
	var size int64
	_ = view(db.bolt, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(metaUsedMax)
		// Missing: no use was ever written beyond a token's creation
		// (every write of a use writes it, and so does the upgrade from
		// schema 1), which readForUse checks on its own.
		db.usedMax.Store(int64(beUint64(v)))
		size = tx.Size()
		return nil
	})
	// The count is the file's word: a damaged one must not size the maps
	// past the records the file can hold (each at least a leaf element's
	// header and its key), or Open dies of a fatal "out of memory".
	db.cache.reserve(min(db.lastCount.Load(), size/minRecordBytes))

	flushEvery := o.TouchInterval / 2
	if o.TouchInterval > 0 {
		// Halved to zero, a tiny interval (TouchInterval: 1 is a
		// nanosecond) would turn the writer off, not make it eager.
		flushEvery = max(flushEvery, time.Millisecond)
	}
	if !o.ReadOnly {
		db.sweeper, db.writer = db.startLoops(o.SweepInterval, flushEvery)
	}
	return db, nil
}

// Path returns the file's path.
func (db *DB) Path() string { return db.path }

// Close writes the uses not yet persisted, stops the background goroutines
// and waits for them, and closes the file. It waits for transactions in
// progress. Later calls, and every other method, return [ErrClosed];
// Close itself returns nil when called again.
func (db *DB) Close() error {
	first := false
	db.closeOnce.Do(func() {
		first = true
		db.closed.Store(true)
		close(db.closing)
		// Each cancels its sweep or flush between transactions, and waits.
		db.sweeper.Stop()
		db.writer.Stop()
		var err error
		if !db.ro {
			err = errors.Join(db.flush(context.Background(), false), db.syncFreelist())
		}
		db.commit.reads.close()
		if db.commit.wedged.Load() { // bbolt's Close would wait for ever
			db.closeErr = errors.Join(err, wrap("close", fmt.Errorf("%w; the file stays open until the process exits", errWedged)))
			return
		}
		db.closeErr = errors.Join(err, db.bolt.Close())
	})
	if !first {
		return nil
	}
	return db.closeErr
}

// syncFreelist writes bbolt's freelist, which the store does not write
// during operation (see openBolt), so that the next Open reads it instead
// of walking the file. The flag is set inside the transaction, whose
// commit reads it, so that no other writer sees it change mid-commit.
func (db *DB) syncFreelist() error {
	return db.commit.update(func(*bolt.Tx) error {
		db.bolt.NoFreelistSync = false
		return nil
	})
}

// begin is the common entry check of every method.
func (db *DB) begin(ctx context.Context, write bool) error {
	if db.closed.Load() {
		return ErrClosed
	}
	if write && db.ro {
		return ErrReadOnly
	}
	return ctx.Err()
}

func (db *DB) nowMs() int64 { return db.now().UnixMilli() }

// Stats returns the store's counters. It reads the token count from the
// file; after Close it reports the last count it read.
func (db *DB) Stats() Stats {
	if !db.closed.Load() {
		_ = view(db.bolt, func(tx *bolt.Tx) error {
			if m := tx.Bucket(bucketMeta); m != nil {
				db.lastCount.Store(int64(beUint64(m.Get(metaCount))))
			}
			return nil
		})
	}
	c := &db.ctr
	return Stats{
		Tokens:            db.lastCount.Load(),
		Issued:            c.issued.Load(),
		Validated:         c.validated.load(),
		Lookups:           c.lookups.load(),
		Revoked:           c.revoked.Load(),
		Swept:             c.swept.Load(),
		RejectedMalformed: c.malformed.Load(),
		RejectedNotFound:  c.notFound.Load(),
		RejectedExpired:   c.expired.Load(),
		RejectedReused:    c.reused.Load(),
		TouchWrites:       c.touchWrites.Load(),
		TouchesPersisted:  c.touchesPersisted.Load(),
		CacheHits:         c.hits.load(),
		CacheMisses:       c.misses.load(),
	}
}
