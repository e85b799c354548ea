// Package tokenstore is an embedded, single-file store of opaque bearer
// tokens for Go programs, on bbolt: what Django REST Framework's
// TokenAuthentication gives a Django app, plus expiry.
//
// # Basics
//
// [Open] a file, [DB.Issue] a token to a subject (a user ID), hand the token
// to the client once, and [DB.Validate] it on every request. Tokens expire by
// an [Absolute] or a [Sliding] policy; a background sweeper deletes them.
// Each token has a non-secret ID (a UUIDv7) to list, inspect and revoke it
// without holding the token.
//
//	db, err := tokenstore.Open("tokens.db", nil)
//	...
//	token, info, err := db.Issue(ctx, "user-42")
//	...
//	info, err = db.Validate(ctx, token) // on each request
//
// # What is stored
//
// Never a token: records are keyed by the SHA-256 of the token, so a copy of
// the file, a backup or a log of it grants nothing. Tokens are
// "<prefix>_<body>" with 256 random bits and a CRC32 checksum: a mistyped or
// foreign token is refused as [ErrMalformed] without reading the file.
// Errors and logs never contain a token.
//
// # Guarantees
//
// Durability: Issue, IssueBatch, Revoke, RevokeID, RevokeSubject and Rotate
// return after their bbolt transaction is fsync'd; concurrent callers share
// one transaction (group commit). Revocation is immediate: once Revoke
// returns, Validate refuses the token.
//
// Sliding expiry without a write per request: Validate reads, and keeps the
// use in memory. A use reaches the file in the background (every half
// TouchInterval, in batches) and on [DB.Close]; a Validate writes at once,
// before returning, only when the token's stored last use is TouchInterval
// or more behind. So after a crash a sliding token has lost at most
// TouchInterval of sliding: it may expire up to TouchInterval earlier than
// it would have, never later (it fails closed). A restart never extends a
// lifetime: deadlines are absolute Unix milliseconds.
//
// Damage: a damaged file is refused by Open or costs the method that
// meets the damage an [ErrCorrupt] — never a panic, a hang or a revoked
// token accepted. [DB.Check] finds it.
//
// Concurrency: a [*DB] is safe for simultaneous use by many goroutines. One
// process at a time opens a file for writing; another gets [ErrLocked] after
// Options.LockTimeout.
//
// # Caveats
//
// bbolt transactions cannot be cancelled: a context is checked before each
// transaction starts (and between sweep chunks), not during one. A file
// does not shrink when tokens are deleted; the tokenstore command's compact
// rewrites it.
//
// bbolt's freelist is written at Close, not on every commit (it made each
// Issue on a large, churned file ten times slower). So the first Open after
// a crash, and a write transaction that fails and rolls back, walk the
// whole file to rebuild it: about half a second at a million tokens.
//
// The store trusts the clock: a clock set back by D lets tokens live up to
// D longer in real time (last uses never move back).
//
// A Validate whose write of a last use fails (a full disk) still succeeds;
// the use stays in memory for the background writer.
package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options configure [Open]. A nil *Options means every default; a field's
// zero value means its default. Open copies the Options: changing them
// afterwards has no effect.
type Options struct {
	// Policy applies to tokens issued without WithPolicy.
	// Zero: Sliding(14 days, 30 days).
	Policy Policy

	// Prefix starts every token ("tks_..."), so that people and secret
	// scanners can tell what a string is. 1 to 16 lowercase letters or
	// digits, starting with a letter. Default "tks". Tokens of one prefix
	// are refused by a store of another as ErrMalformed.
	Prefix string

	// Now is the clock. Default time.Now. Tests inject their own.
	Now func() time.Time

	// SweepInterval is how often the background sweeper deletes expired
	// tokens. Zero: 1 minute. Negative: no background sweeping ([DB.Sweep]
	// still works).
	SweepInterval time.Duration

	// TouchInterval bounds how far a token's stored last use may lag its
	// real one, which is what a crash can cost a sliding token. Uses are
	// written in the background every TouchInterval/2, and by Validate
	// itself when the stored use is TouchInterval behind. Zero: 1 minute.
	// Negative: every Validate writes (slow: one fsync per request).
	TouchInterval time.Duration

	// LockTimeout is how long Open waits for another process to release
	// the file before it returns ErrLocked. Zero: 1 second.
	LockTimeout time.Duration

	// MaxTokensPerSubject caps a subject's live tokens: beyond it Issue
	// fails with ErrTokenLimit and stores nothing. Zero: unlimited.
	MaxTokensPerSubject int

	// CacheSize is how many decoded records are kept in memory for
	// Validate and Lookup (about 200 bytes each). Zero: 262,144.
	// Negative: none beyond uses not yet written.
	CacheSize int

	// Logger receives the sweeper's and the background writer's reports.
	// Nil: they are discarded. Tokens are never logged.
	Logger *slog.Logger

	// ReadOnly opens the file with a shared lock, for reading while no
	// writer holds it. Writes return ErrReadOnly; uses seen by Validate
	// stay in memory and are never written.
	ReadOnly bool
}

const (
	defaultSweepInterval = time.Minute
	defaultTouchInterval = time.Minute
	defaultLockTimeout   = time.Second
	defaultCacheSize     = 1 << 18

	// flushChunk bounds the last-used times written per transaction.
	flushChunk = 10000
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

	cache     *cache
	commit    committer
	sweepMu   sync.Mutex // one sweep at a time
	sweepSize chunkSizer // tokens per sweep transaction; under sweepMu
	flushMu   sync.Mutex // one flush at a time

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	cancel    context.CancelFunc // cancels the background loop's work
	stop      chan struct{}      // closed by Close to end the loop
	done      chan struct{}      // closed by the loop when it has ended

	ctr       counters
	lastCount atomic.Int64
}

type counters struct {
	issued, validated, lookups, revoked, swept  atomic.Uint64
	malformed, notFound, expired                atomic.Uint64
	touchWrites, touchesPersisted, hits, misses atomic.Uint64
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
		return nil, fmt.Errorf("tokenstore: Options.Policy: %w", err)
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
		bolt:   bdb,
		path:   path,
		format: format,
		policy: o.Policy,
		now:    o.Now,
		touch:  o.TouchInterval,
		limit:  o.MaxTokensPerSubject,
		log:    o.Logger,
		ro:     o.ReadOnly,
		cache:  newCache(o.CacheSize),
		commit: committer{db: bdb},
	}
	if err := db.checkSchema(); err != nil {
		_ = bdb.Close()
		return nil, wrap("open "+path, err)
	}
	db.Stats() // primes lastCount

	flushEvery := o.TouchInterval / 2
	if !o.ReadOnly && (o.SweepInterval > 0 || flushEvery > 0) {
		var ctx context.Context
		ctx, db.cancel = context.WithCancel(context.Background())
		db.stop, db.done = make(chan struct{}), make(chan struct{})
		go db.loop(ctx, o.SweepInterval, flushEvery)
	}
	return db, nil
}

// openBolt opens the bbolt file, turning its errors (and the panics some
// damaged files cause in it) into tokenstore's.
//
// A file cut short (a copy that failed, a full disk) keeps valid meta pages
// that point past its end, and bbolt reads the missing pages with no
// check: its read-write Open loads the freelist page at once, which kills
// the process (SIGSEGV or SIGBUS through the memory map, not a panic that
// recover could catch); so does a read-only Open that preloads the
// freelist. So an existing file is first opened read-only without
// preloading, which reads nothing but the two meta pages, and its size
// checked against them; only then is it opened for real.
func openBolt(path string, o *Options) (bdb *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			// bbolt panicked inside Open: its file descriptor, and the
			// lock, are lost until the process ends.
			bdb, err = nil, wrap("open "+path, fmt.Errorf("%w: bbolt: %v", ErrCorrupt, r))
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // see view
	if fi, statErr := os.Stat(path); statErr == nil && fi.Size() > 0 {
		probe, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout, ReadOnly: true})
		if err != nil {
			return nil, boltOpenErr(path, o, err)
		}
		err = probeFile(probe)
		if cerr := probe.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, wrap("open "+path, err)
		}
	}
	bo := &bolt.Options{
		Timeout:  o.LockTimeout,
		ReadOnly: o.ReadOnly,
		// The hashmap freelist allocates in O(1) where the array one scans;
		// it matters once sweeps have freed many pages.
		FreelistType: bolt.FreelistMapType,
		// Written on every commit, the freelist costs what the file's free
		// pages do: the 1M-token benchmark file has 30,000 of them, and
		// each Issue wrote 240 KB of freelist (and sorted it: the hashmap
		// freelist keeps no order) and took 20 ms, against 2.1 ms for a
		// bare one-key Update; without it, about 3 ms. etcd runs bbolt the
		// same way. The price is a walk of the whole file to rebuild the
		// freelist when it is missing: Close writes it (syncFreelist), so
		// that is only after a crash (about 0.5 s at 1M tokens), or on a
		// rolled-back write transaction, which is why group members refuse
		// rather than fail (commit.go).
		NoFreelistSync: !o.ReadOnly,
		// A reader preloads the freelist too, so that FileInfo can count
		// free pages.
		PreLoadFreelist: o.ReadOnly,
	}
	bdb, err = bolt.Open(path, 0o600, bo)
	if err != nil {
		return nil, boltOpenErr(path, o, err)
	}
	if err := checkFileSize(bdb); err != nil {
		_ = bdb.Close()
		return nil, wrap("open "+path, err)
	}
	return bdb, nil
}

// boltOpenErr turns an error of bolt.Open into tokenstore's.
func boltOpenErr(path string, o *Options, err error) error {
	switch {
	case strings.Contains(err.Error(), "file size too small"): // bbolt has no sentinel for a file under two pages
		return wrap("open "+path, fmt.Errorf("%w: %v", ErrCorrupt, err))
	case errors.Is(err, berrors.ErrTimeout):
		return wrap("open "+path, fmt.Errorf("%w (waited %s; is the application that uses it running?)", ErrLocked, o.LockTimeout))
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return wrap("open "+path, fmt.Errorf("%w: %v", ErrCorrupt, err))
	case (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)) && !o.ReadOnly:
		return wrap("open "+path, fmt.Errorf("%w (to only read it, open it with Options.ReadOnly)", err))
	}
	return wrap("open "+path, err)
}

// checkFileSize refuses a file shorter than its meta page says (see
// openBolt). It reads no page but the meta.
func checkFileSize(bdb *bolt.DB) error {
	fi, err := os.Stat(bdb.Path())
	if err != nil {
		return err
	}
	tx, err := bdb.Begin(false)
	if err != nil {
		return err
	}
	want := tx.Size()
	_ = tx.Rollback()
	if fi.Size() < want {
		return fmt.Errorf("%w: the file is %d bytes, its header says %d (truncated?)", ErrCorrupt, fi.Size(), want)
	}
	return nil
}

// checkSchema refuses files that are not tokenstore's and sets up new ones.
func (db *DB) checkSchema() (err error) {
	fresh := false
	err = view(db.bolt, func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("%w: a bbolt file of another application (no tokenstore meta bucket)", ErrCorrupt)
			}
			fresh = true
			return nil
		}
		if string(m.Get(metaApp)) != string(appName) {
			return fmt.Errorf("%w: meta bucket does not name tokenstore", ErrCorrupt)
		}
		v := m.Get(metaSchema)
		if len(v) != 4 {
			return fmt.Errorf("%w: no schema version", ErrCorrupt)
		}
		if s := beUint32(v); s > schemaVersion {
			return fmt.Errorf("%w: schema version %d is newer than this build's %d; upgrade tokenstore", ErrCorrupt, s, schemaVersion)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, name)
			}
		}
		return nil
	})
	if err != nil || !fresh {
		return err
	}
	if db.ro {
		return fmt.Errorf("%w: the file was never initialised (open it once without ReadOnly)", ErrCorrupt)
	}
	return db.bolt.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		return errors.Join(
			m.Put(metaApp, appName),
			m.Put(metaSchema, beAppend32(nil, schemaVersion)),
			m.Put(metaCount, beAppend64(nil, 0)),
		)
	})
}

// Path returns the file's path.
func (db *DB) Path() string { return db.path }

// Close writes the uses not yet persisted, stops the background goroutine
// and waits for it, and closes the file. It waits for transactions in
// progress. Later calls, and every other method, return [ErrClosed];
// Close itself returns nil when called again.
func (db *DB) Close() error {
	first := false
	db.closeOnce.Do(func() {
		first = true
		db.closed.Store(true)
		if db.stop != nil {
			db.cancel()
			close(db.stop)
			<-db.done
		}
		var err error
		if !db.ro {
			err = errors.Join(db.flush(context.Background()), db.syncFreelist())
		}
		if db.commit.wedged.Load() { // bbolt's Close would wait for ever
			db.closeErr = errors.Join(err, fmt.Errorf("tokenstore: close: %w; the file stays open until the process exits", errWedged))
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

// boltErr turns bbolt's errors into tokenstore's.
func boltErr(err error) error {
	switch {
	case errors.Is(err, berrors.ErrDatabaseNotOpen), errors.Is(err, berrors.ErrTxClosed):
		return ErrClosed
	case errors.Is(err, berrors.ErrDatabaseReadOnly):
		return ErrReadOnly
	}
	return err
}

// view runs a read transaction. bbolt panics on some damaged pages, and a
// damaged page pointer makes it read outside its mapping (a fault, which
// SetPanicOnFault makes a panic in this goroutine); view turns both into
// ErrCorrupt (bbolt ends the transaction as the panic unwinds), so a
// damaged file costs the caller an error, never the process. Writes go
// through [committer.update], which does the same.
func view(b *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return b.View(fn)
}

// errCallerPanic stops a ForEach whose callback panicked.
var errCallerPanic = errors.New("tokenstore: callback panicked")

// recoverCorrupt, deferred, turns a panic into an ErrCorrupt in *err.
func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: bbolt: %v", ErrCorrupt, r)
	}
}

func (db *DB) nowMs() int64 { return db.now().UnixMilli() }

// Issue creates a token for subject under the store's policy, or the one
// given by [WithPolicy], and returns it with its Info. The token is shown
// only here: the file keeps its hash. Issue is durable when it returns.
func (db *DB) Issue(ctx context.Context, subject string, opts ...IssueOption) (string, Info, error) {
	if err := db.begin(ctx, true); err != nil {
		return "", Info{}, wrap("issue", err)
	}
	if err := ValidateSubject(subject); err != nil {
		return "", Info{}, err
	}
	p, err := NewIssueParams(opts...)
	if err != nil {
		return "", Info{}, err
	}
	token, h, rec, err := db.newRecord(subject, p.Policy, p.Metadata)
	if err != nil {
		return "", Info{}, err
	}
	err = db.commit.run(func(tx *bolt.Tx) error {
		if err := db.checkLimit(tx, subject, rec.created, 1); err != nil {
			return refuse(err)
		}
		return putRecord(tx, h, &rec)
	})
	if err != nil {
		return "", Info{}, wrap("issue", boltErr(err))
	}
	db.ctr.issued.Add(1)
	return token, rec.info(rec.lastUsed), nil
}

func (db *DB) newRecord(subject string, p Policy, meta map[string]string) (string, Hash, record, error) {
	if p.IsZero() {
		p = db.policy
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", Hash{}, record{}, wrap("new id", err)
	}
	token, h := db.format.Generate()
	now := db.nowMs()
	return token, h, record{id: id, subject: subject, created: now, lastUsed: now, policy: p, meta: meta}, nil
}

// checkLimit fails with ErrTokenLimit when adding n tokens would give
// subject more than the per-subject limit of live ones. It runs in the
// transaction that adds them, so concurrent Issues cannot both pass it.
func (db *DB) checkLimit(tx *bolt.Tx, subject string, now int64, n int) error {
	if db.limit <= 0 {
		return nil
	}
	prefix := subjectPrefix(subject)
	total, live := 0, 0
	c := tx.Bucket(bucketSubjects).Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		total++
	}
	if total+n <= db.limit {
		return nil
	}
	// Expired tokens the sweeper has not reached yet do not count.
	tokens := tx.Bucket(bucketTokens)
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		rec, err := decodeRecord(tokens.Get(v))
		if err != nil {
			return err
		}
		if now < rec.policy.Deadline(rec.created, db.cache.lastUse(Hash(v), &rec)) {
			live++
		}
	}
	if live+n > db.limit {
		return fmt.Errorf("%w: %d live tokens, limit %d", ErrTokenLimit, live, db.limit)
	}
	return nil
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

// putRecord writes a new record and its index entries.
func putRecord(tx *bolt.Tx, h Hash, rec *record) error {
	tokens := tx.Bucket(bucketTokens)
	if tokens.Get(h[:]) != nil {
		return errors.New("tokenstore: token hash collision") // 2^-128: a broken random source
	}
	return errors.Join(
		tokens.Put(h[:], rec.encode(make([]byte, 0, 64+len(rec.subject)))),
		tx.Bucket(bucketIDs).Put(rec.id[:], h[:]),
		tx.Bucket(bucketSubjects).Put(subjectKey(rec.subject, rec.id), h[:]),
		tx.Bucket(bucketExpiry).Put(expiryKey(rec.deadline(), rec.id), h[:]),
		addCount(tx, 1),
	)
}

// deletes deletes records for one write call and keeps the cache
// coherent: each token is announced to the cache inside the transaction,
// before it can commit, and released by end once the call's transaction
// has ended (see cache.beginDelete). A write's fn may run more than once;
// end releases every run's announcements.
type deletes struct {
	cache  *cache
	hashes []Hash
}

// delete removes h's record and index entries in tx.
func (d *deletes) delete(tx *bolt.Tx, h Hash, rec *record) error {
	d.cache.beginDelete(h)
	d.hashes = append(d.hashes, h)
	return deleteRecord(tx, h, rec)
}

// end releases the tokens announced by delete; call it after the
// transaction has ended, committed or not.
func (d *deletes) end() {
	for _, h := range d.hashes {
		d.cache.endDelete(h)
	}
	d.hashes = nil
}

// deleteRecord removes a record and its index entries.
func deleteRecord(tx *bolt.Tx, h Hash, rec *record) error {
	return errors.Join(
		tx.Bucket(bucketTokens).Delete(h[:]),
		tx.Bucket(bucketIDs).Delete(rec.id[:]),
		tx.Bucket(bucketSubjects).Delete(subjectKey(rec.subject, rec.id)),
		tx.Bucket(bucketExpiry).Delete(expiryKey(rec.deadline(), rec.id)),
		addCount(tx, -1),
	)
}

func addCount(tx *bolt.Tx, delta int64) error {
	m := tx.Bucket(bucketMeta)
	n := int64(beUint64(m.Get(metaCount))) + delta
	return m.Put(metaCount, beAppend64(nil, uint64(n)))
}

// getRecord reads the record of h inside tx.
func getRecord(tx *bolt.Tx, h Hash) (record, error) {
	v := tx.Bucket(bucketTokens).Get(h[:])
	if v == nil {
		return record{}, ErrNotFound
	}
	return decodeRecord(v)
}

// Validate checks token and counts it as a use: a sliding token's deadline
// moves to now + idle (within its cap). It returns [ErrMalformed],
// [ErrNotFound] (unknown or revoked) or [ErrExpired]; the returned Info
// carries the new ExpiresAt.
//
// Validate usually writes nothing: see "Sliding expiry without a write per
// request" in the package documentation.
func (db *DB) Validate(ctx context.Context, token string) (Info, error) {
	return db.check(ctx, token, true)
}

// Lookup answers as [DB.Validate] does without counting a use.
func (db *DB) Lookup(ctx context.Context, token string) (Info, error) {
	return db.check(ctx, token, false)
}

func (db *DB) check(ctx context.Context, token string, use bool) (Info, error) {
	op := "lookup"
	if use {
		op = "validate"
	}
	if err := db.begin(ctx, false); err != nil {
		return Info{}, wrap(op, err)
	}
	h, err := db.format.Parse(token)
	if err != nil {
		db.ctr.malformed.Add(1)
		return Info{}, err
	}
	now := db.nowMs()
	s := db.cache.shard(h)
	for {
		s.mu.Lock()
		e := s.m[h]
		// While a delete of h is in flight, the file decides: once that
		// delete commits, someone may have seen it (a Revoke's ErrNotFound)
		// before the entry here is dropped.
		deleting := s.deleting[h] > 0
		if e == nil || deleting {
			gen := s.gen
			s.mu.Unlock()
			db.ctr.misses.Add(1)
			rec, err := db.read(h)
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					db.ctr.notFound.Add(1)
				}
				return Info{}, wrap(op, err)
			}
			s.mu.Lock()
			if s.gen != gen { // a write deleted something in this shard meanwhile: read again
				s.mu.Unlock()
				continue
			}
			deleting = s.deleting[h] > 0
			if e = s.m[h]; e == nil {
				e = &entry{rec: rec, used: rec.lastUsed}
				if !deleting { // a record about to go is not cached
					s.insertLocked(h, e)
				}
			}
		} else {
			db.ctr.hits.Add(1)
		}
		if now >= e.rec.policy.Deadline(e.rec.created, e.used) {
			s.mu.Unlock()
			db.ctr.expired.Add(1)
			return Info{}, wrap(op, ErrExpired)
		}
		if use && now > e.used { // never backwards, whatever the clock does
			e.used = now
		}
		info := e.rec.info(e.used)
		sync := use && !db.ro && !deleting && e.dirty() && (db.touch < 0 ||
			e.rec.policy.IsSliding() && e.used-e.rec.lastUsed >= db.touch.Milliseconds())
		if s.m[h] == e {
			s.releaseLocked(h, e)
		}
		s.mu.Unlock()

		if sync {
			// The token is valid whatever this write does: if it fails (a
			// full disk, say) the use stays in memory for the background
			// writer, and a crash before that can only make the token
			// expire earlier. Failing the request would turn a full disk
			// into an outage of every idle-returning user.
			if err := db.persistTouch(h); err != nil && !errors.Is(err, ErrClosed) {
				db.log.Warn("tokenstore: writing a last use failed; kept in memory", "id", info.ID, "err", err)
			}
		}
		if info.Metadata != nil {
			info.Metadata = maps.Clone(info.Metadata)
		}
		if use {
			db.ctr.validated.Add(1)
		} else {
			db.ctr.lookups.Add(1)
		}
		return info, nil
	}
}

// read reads h's record in a read-only transaction.
func (db *DB) read(h Hash) (rec record, err error) {
	err = view(db.bolt, func(tx *bolt.Tx) error {
		rec, err = getRecord(tx, h)
		return err
	})
	return rec, boltErr(err)
}

// persistTouch writes h's latest in-memory use now, sharing a transaction
// with other writers.
func (db *DB) persistTouch(h Hash) error {
	var written int64
	err := db.commit.run(func(tx *bolt.Tx) error {
		written = 0
		used := db.cache.used(h)
		ok, err := writeTouch(tx, h, used)
		if ok {
			written = used
		}
		if errors.Is(err, ErrNotFound) {
			return nil // revoked meanwhile: nothing to slide
		}
		return err
	})
	if err == nil && written > 0 {
		db.cache.persisted(h, written)
		db.ctr.touchWrites.Add(1)
		db.ctr.touchesPersisted.Add(1)
	}
	return err
}

// writeTouch stores used as h's last use when it is later than the stored
// one, moving the token in the expiry index with its deadline.
func writeTouch(tx *bolt.Tx, h Hash, used int64) (bool, error) {
	rec, err := getRecord(tx, h)
	if err != nil || used <= rec.lastUsed {
		return false, err
	}
	old := rec.deadline()
	rec.lastUsed = used
	expiry := tx.Bucket(bucketExpiry)
	if d := rec.deadline(); d != old {
		if err := errors.Join(expiry.Delete(expiryKey(old, rec.id)), expiry.Put(expiryKey(d, rec.id), h[:])); err != nil {
			return false, err
		}
	}
	return true, tx.Bucket(bucketTokens).Put(h[:], rec.encode(make([]byte, 0, 64+len(rec.subject))))
}

// Get returns the token with the given ID. For a token past its deadline
// that the sweeper has not deleted yet it returns the Info and
// [ErrExpired]; for none, [ErrNotFound].
func (db *DB) Get(ctx context.Context, id uuid.UUID) (Info, error) {
	if err := db.begin(ctx, false); err != nil {
		return Info{}, wrap("get", err)
	}
	var rec record
	var h Hash
	err := view(db.bolt, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIDs).Get(id[:])
		if len(v) != len(h) {
			return ErrNotFound
		}
		h = Hash(v)
		var err error
		rec, err = getRecord(tx, h)
		return err
	})
	if err != nil {
		return Info{}, wrap("get "+id.String(), boltErr(err))
	}
	info := rec.info(db.cache.lastUse(h, &rec))
	if !db.now().Before(info.ExpiresAt) {
		return info, wrap("get "+id.String(), ErrExpired)
	}
	db.ctr.lookups.Add(1)
	return info, nil
}

// List returns subject's live tokens, oldest first. An unknown subject has
// none: List returns an empty slice and no error.
func (db *DB) List(ctx context.Context, subject string) ([]Info, error) {
	if err := db.begin(ctx, false); err != nil {
		return nil, wrap("list", err)
	}
	if err := ValidateSubject(subject); err != nil {
		return nil, err
	}
	now := db.nowMs()
	out := []Info{}
	err := view(db.bolt, func(tx *bolt.Tx) error {
		prefix := subjectPrefix(subject)
		tokens := tx.Bucket(bucketTokens)
		c := tx.Bucket(bucketSubjects).Cursor()
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			rec, err := decodeRecord(tokens.Get(v))
			if err != nil {
				return err
			}
			used := db.cache.lastUse(Hash(v), &rec)
			if now < rec.policy.Deadline(rec.created, used) {
				out = append(out, rec.info(used))
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list", boltErr(err))
	}
	return out, nil
}

// ForEach calls fn with every token in the file, live or expired, in ID
// (creation) order, inside one read transaction; fn's error stops it and
// is returned. It is how a tool lists a million tokens without holding them.
func (db *DB) ForEach(ctx context.Context, fn func(Info) error) error {
	if err := db.begin(ctx, false); err != nil {
		return wrap("for each", err)
	}
	// view turns panics into ErrCorrupt; fn's own are the caller's, and
	// go back to it as panics.
	var fnPanic any
	call := func(info Info) (err error) {
		defer func() {
			if r := recover(); r != nil {
				fnPanic, err = r, errCallerPanic
			}
		}()
		return fn(info)
	}
	err := boltErr(view(db.bolt, func(tx *bolt.Tx) error {
		tokens := tx.Bucket(bucketTokens)
		c := tx.Bucket(bucketIDs).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, err := decodeRecord(tokens.Get(v))
			if err != nil {
				return fmt.Errorf("id %x: %w", k, err)
			}
			if err := call(rec.info(db.cache.lastUse(Hash(v), &rec))); err != nil {
				return err
			}
		}
		return nil
	}))
	if fnPanic != nil {
		panic(fnPanic)
	}
	return err
}

// Revoke deletes token at once and durably. It returns [ErrNotFound] for
// a token the store does not hold (never issued, or already revoked).
func (db *DB) Revoke(ctx context.Context, token string) error {
	if err := db.begin(ctx, true); err != nil {
		return wrap("revoke", err)
	}
	h, err := db.format.Parse(token)
	if err != nil {
		return err
	}
	// An unknown token (revoked twice, say) is answered by a read, without
	// queueing for a write transaction.
	if _, err := db.read(h); err != nil {
		return wrap("revoke", err)
	}
	return db.revoke("revoke", func(*bolt.Tx) (Hash, error) { return h, nil })
}

// RevokeID deletes the token with the given ID. It returns [ErrNotFound]
// when there is none.
func (db *DB) RevokeID(ctx context.Context, id uuid.UUID) error {
	op := "revoke " + id.String()
	if err := db.begin(ctx, true); err != nil {
		return wrap(op, err)
	}
	return db.revoke(op, func(tx *bolt.Tx) (Hash, error) {
		v := tx.Bucket(bucketIDs).Get(id[:])
		if len(v) != len(Hash{}) {
			return Hash{}, ErrNotFound
		}
		return Hash(v), nil
	})
}

// revoke deletes the one token that find names, in a group-committed
// transaction.
func (db *DB) revoke(op string, find func(*bolt.Tx) (Hash, error)) error {
	del := deletes{cache: db.cache}
	err := db.commit.run(func(tx *bolt.Tx) error {
		h, err := find(tx)
		if err != nil {
			return refuse(err)
		}
		rec, err := getRecord(tx, h)
		if err != nil {
			return refuse(err)
		}
		return del.delete(tx, h, &rec)
	})
	del.end()
	if err != nil {
		return wrap(op, boltErr(err))
	}
	db.ctr.revoked.Add(1)
	return nil
}

// RevokeSubject deletes every token of subject ("log out everywhere") in
// one transaction and returns how many there were, expired ones included.
func (db *DB) RevokeSubject(ctx context.Context, subject string) (int, error) {
	if err := db.begin(ctx, true); err != nil {
		return 0, wrap("revoke subject", err)
	}
	if err := ValidateSubject(subject); err != nil {
		return 0, err
	}
	var hashes []Hash
	del := deletes{cache: db.cache}
	err := db.commit.run(func(tx *bolt.Tx) error {
		hashes = hashes[:0]
		prefix := subjectPrefix(subject)
		c := tx.Bucket(bucketSubjects).Cursor()
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			hashes = append(hashes, Hash(v))
		}
		recs := make([]record, len(hashes)) // all read before any is deleted: a bad one is a refusal
		for i, h := range hashes {
			rec, err := getRecord(tx, h)
			if err != nil {
				return refuse(err)
			}
			recs[i] = rec
		}
		for i, h := range hashes {
			if err := del.delete(tx, h, &recs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	del.end()
	if err != nil {
		return 0, wrap("revoke subject", boltErr(err))
	}
	db.ctr.revoked.Add(uint64(len(hashes)))
	return len(hashes), nil
}

// Rotate issues a new token with the subject, policy and metadata of token
// and revokes token, in one durable transaction: afterwards exactly one of
// the two works. The new token's lifetime starts now. Rotate an expired
// token and get [ErrExpired].
func (db *DB) Rotate(ctx context.Context, token string) (string, Info, error) {
	if err := db.begin(ctx, true); err != nil {
		return "", Info{}, wrap("rotate", err)
	}
	old, err := db.format.Parse(token)
	if err != nil {
		return "", Info{}, err
	}
	var (
		newToken string
		h        Hash
		rec      record
	)
	del := deletes{cache: db.cache}
	err = db.commit.run(func(tx *bolt.Tx) error {
		prev, err := getRecord(tx, old)
		if err != nil {
			return refuse(err)
		}
		now := db.nowMs()
		if now >= prev.policy.Deadline(prev.created, db.cache.lastUse(old, &prev)) {
			return refuse(ErrExpired)
		}
		if newToken == "" { // a retried group keeps the token it generated
			if newToken, h, rec, err = db.newRecord(prev.subject, prev.policy, prev.meta); err != nil {
				return refuse(err)
			}
		}
		return errors.Join(del.delete(tx, old, &prev), putRecord(tx, h, &rec))
	})
	del.end()
	if err != nil {
		return "", Info{}, wrap("rotate", boltErr(err))
	}
	db.ctr.issued.Add(1)
	db.ctr.revoked.Add(1)
	return newToken, rec.info(rec.lastUsed), nil
}

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
		Validated:         c.validated.Load(),
		Lookups:           c.lookups.Load(),
		Revoked:           c.revoked.Load(),
		Swept:             c.swept.Load(),
		RejectedMalformed: c.malformed.Load(),
		RejectedNotFound:  c.notFound.Load(),
		RejectedExpired:   c.expired.Load(),
		TouchWrites:       c.touchWrites.Load(),
		TouchesPersisted:  c.touchesPersisted.Load(),
		CacheHits:         c.hits.Load(),
		CacheMisses:       c.misses.Load(),
	}
}

// IssueRequest is one token to create with [DB.IssueBatch].
type IssueRequest struct {
	Subject  string
	Policy   Policy            // zero: the store's default
	Metadata map[string]string // optional
}

// Issued is a token created by [DB.IssueBatch].
type Issued struct {
	Token string
	Info  Info
}

// IssueBatch creates many tokens in one durable transaction: all or none.
// It is for provisioning (a fleet of devices, a migration) where one
// transaction per token would cost an fsync each. The per-subject limit
// applies to the batch as a whole.
func (db *DB) IssueBatch(ctx context.Context, reqs []IssueRequest) ([]Issued, error) {
	if err := db.begin(ctx, true); err != nil {
		return nil, wrap("issue batch", err)
	}
	type item struct {
		h   Hash
		rec record
	}
	items := make([]item, len(reqs))
	out := make([]Issued, len(reqs))
	perSubject := map[string]int{}
	for i, r := range reqs {
		if err := ValidateSubject(r.Subject); err != nil {
			return nil, wrap("issue batch", fmt.Errorf("request %d: %w", i, err))
		}
		if err := errors.Join(r.Policy.Validate(), ValidateMetadata(r.Metadata)); err != nil {
			return nil, wrap("issue batch", fmt.Errorf("request %d: %w", i, err))
		}
		token, h, rec, err := db.newRecord(r.Subject, r.Policy, maps.Clone(r.Metadata))
		if err != nil {
			return nil, err
		}
		if len(rec.meta) == 0 {
			rec.meta = nil
		}
		items[i] = item{h, rec}
		out[i] = Issued{Token: token, Info: rec.info(rec.lastUsed)}
		perSubject[r.Subject]++
	}
	// bbolt inserts far faster in key order: sort each bucket's puts.
	type kv struct{ k, v []byte }
	puts := make([][]kv, 4)
	for i := range items {
		it := &items[i]
		puts[0] = append(puts[0], kv{it.h[:], it.rec.encode(nil)})
		puts[1] = append(puts[1], kv{it.rec.id[:], it.h[:]})
		puts[2] = append(puts[2], kv{subjectKey(it.rec.subject, it.rec.id), it.h[:]})
		puts[3] = append(puts[3], kv{expiryKey(it.rec.deadline(), it.rec.id), it.h[:]})
	}
	names := [][]byte{bucketTokens, bucketIDs, bucketSubjects, bucketExpiry}
	for _, p := range puts {
		slices.SortFunc(p, func(a, b kv) int { return compareBytes(a.k, b.k) })
	}
	var refused error
	err := db.commit.update(func(tx *bolt.Tx) error {
		for s, n := range perSubject {
			// Nothing is written yet: commit the empty transaction rather
			// than roll back (see groupRefusal in commit.go).
			if refused = db.checkLimit(tx, s, db.nowMs(), n); refused != nil {
				return nil
			}
		}
		for i, p := range puts {
			b := tx.Bucket(names[i])
			for _, e := range p {
				if err := b.Put(e.k, e.v); err != nil {
					return err
				}
			}
		}
		return addCount(tx, int64(len(items)))
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, wrap("issue batch", boltErr(err))
	}
	db.ctr.issued.Add(uint64(len(items)))
	return out, nil
}

func compareBytes(a, b []byte) int {
	switch {
	case string(a) < string(b):
		return -1
	case string(a) > string(b):
		return 1
	}
	return 0
}
