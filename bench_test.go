package tokenstore_test

// The benchmarks behind README.performance.md. They run only with -bench,
// never under a plain go test:
//
//	go test -run '^$' -bench . -benchmem -timeout 60m .
//	go test -run '^$' -bench . -benchmem -tokens 100000 .   # a quick run
//	go test -run '^$' -bench /Validate -benchmem .          # one group
//
// Everything is a sub-benchmark of BenchmarkStore, so that the fixture (a
// file of -tokens tokens, 1,000,000 by default, or $TOKENSTORE_BENCH_TOKENS,
// issued one Issue at a time by 64 goroutines, as logins arrive) is built
// once per run, in that benchmark's temporary directory, and removed with
// it; benchmarks that write work on copies of it. Each target sits beside its baseline, in the same run:
//
//	Validate/returning/{cold,warm}       vs Validate/returning/bbolt-view-get
//	Validate/sliding/*, absolute/cached  vs Validate/touch-every-use and Validate/bbolt-view-get
//	Flush/100k-of-1M                     reports bytes written per use and Validate p99 with and without it
//	Flush/100k-of-1M-issue-wait          reports how long Issues wait for their transaction during the flush and without it
//	Issue/serial                         vs Issue/bbolt-update-one-key
//	Issue/parallel-64                    vs Issue/serial
//	Sweep/10k-of-1M                      vs Sweep/10k-of-10k (and Sweep/none-of-1M)
//	Sweep/100k-of-1M                     reports its transactions' durations and Validate p99 with and without it
//	Sweep/100k-of-1M-scattered           the same for ~100k idle Sliding tokens of the fixture (400k others re-filed)
//	Sweep/100k-of-1M-issue-wait          reports Issue latency, and its wait for its transaction, during the sweep and without it
//	Preload, Open                        report the fixture's build time, the time to open it
//	Interference/*                       Validate p99 beside each kind of work a sweep or flush does, vs Interference/none
//	FileSize/issued-64-writers           bytes per token of the fixture (tokens issued one by one, 64 writers)
//	FileSize/import-50k-batches          the same recipe imported by 50,000-token IssueBatch calls
//
// Working on the library, TOKENSTORE_BENCH_KEEP=dir keeps the fixture in
// dir across runs (remove it after changing how the library writes).

import (
	"cmp"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/tokenstore/tokenstore"
)

var benchTokensFlag = flag.Int("tokens", 0, "tokens in the benchmark fixture file (default 1,000,000, or $TOKENSTORE_BENCH_TOKENS)")

// benchTokens is the fixture size: -tokens, else $TOKENSTORE_BENCH_TOKENS,
// else 1,000,000. Underscores are allowed: 100_000.
func benchTokens(b *testing.B) int {
	if *benchTokensFlag > 0 {
		return *benchTokensFlag
	}
	if s := os.Getenv("TOKENSTORE_BENCH_TOKENS"); s != "" {
		n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
		require.NoError(b, err, "TOKENSTORE_BENCH_TOKENS")
		require.Positive(b, n, "TOKENSTORE_BENCH_TOKENS")
		return n
	}
	return 1_000_000
}

const (
	// preloadChunk is the tokens per IssueBatch call of the bulk import
	// (FileSize/import-50k-batches, Preload). Tokens are keyed by a random
	// hash, so each call rewrites most leaves of the tokens and subjects
	// buckets copy-on-write and leaves the old ones free: at 1M, 20,000
	// per call built the file in 25.7 s (573 bytes/token), 50,000 in
	// 22.1 s (654), 100,000 in 15.5 s (694).
	preloadChunk = 50_000
	// preloadWriters is how many goroutines call Issue while the fixture
	// is built: tokens arrive as users' do, one login at a time, group
	// committed (commit.go) by as many concurrent logins. See buildFixture.
	preloadWriters = 64
	// hotTokens is the working set of the cached Validate benchmarks: the
	// tokens of the clients active within the last TouchInterval.
	hotTokens = 100_000
)

// fixture is a token file built once per run. Even tokens are Sliding
// (the default, 14 days idle, 30 days cap), odd ones Absolute(30 days);
// about four tokens per subject.
type fixture struct {
	dir      string
	pristine string // never written to after it is built
	n        int
	tokens   []string
	t0       time.Time // when every token was issued (and last used)
	took     time.Duration
	txs      uint64 // write transactions that built it

	mu     sync.Mutex
	copies map[string]string
}

// fixtureRequests is the fixture's recipe: request i's subject (a
// seeded draw among n/4) and policy (odd i: Absolute(30 days)).
func fixtureRequests(n int) []tokenstore.IssueRequest {
	rng := mrand.New(mrand.NewPCG(1, 2))
	subjects := max(n/4, 1)
	reqs := make([]tokenstore.IssueRequest, n)
	for i := range reqs {
		reqs[i].Subject = fmt.Sprintf("user-%08d", rng.IntN(subjects))
		if i%2 == 1 {
			reqs[i].Policy = tokenstore.Absolute(30 * 24 * time.Hour)
		}
	}
	return reqs
}

// buildFixture builds the fixture the way an application's tokens
// arrive: one Issue per login, from preloadWriters goroutines, so that the
// store's group commit decides the transactions (about 64 tokens each, as
// for 64 concurrent logins; the txs field and the log say how many).
// Built by 50,000-token IssueBatch calls instead (a bulk import, the
// recipe before issue 10's second round), a third of the 1M-token file
// was free pages: each batch rewrote nearly every leaf of the two
// random-order trees (tokens, subjects). FileSize reports both.
func buildFixture(b *testing.B, dir string, n int) *fixture {
	b.Helper()
	ctx := context.Background()
	fx := &fixture{dir: dir, pristine: filepath.Join(dir, "pristine.db"), n: n, copies: map[string]string{}}
	// Every token is issued at the same instant, so that each benchmark
	// whose clock starts there finds every stored use equally recent.
	fx.t0 = time.Now().Truncate(time.Millisecond)
	start := time.Now()
	db, err := tokenstore.Open(fx.pristine, &tokenstore.Options{SweepInterval: -1, Now: func() time.Time { return fx.t0 }})
	require.NoError(b, err)
	reqs := fixtureRequests(n)
	fx.tokens = make([]string, n)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range preloadWriters {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && failed.Load() == nil; i = int(next.Add(1) - 1) {
				var opts []tokenstore.IssueOption
				if !reqs[i].Policy.IsZero() {
					opts = append(opts, tokenstore.WithPolicy(reqs[i].Policy))
				}
				tok, _, err := db.Issue(ctx, reqs[i].Subject, opts...)
				if err != nil {
					failed.Store(&err)
					return
				}
				fx.tokens[i] = tok
			}
		})
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	require.NoError(b, db.Close())
	fx.took = time.Since(start)
	fx.txs = fileTxID(b, fx.pristine)
	b.Logf("fixture: %d tokens issued by %d goroutines in %s (%.0f tokens/s), %d write transactions (%.1f tokens each)",
		n, preloadWriters, fx.took.Round(time.Millisecond), float64(n)/fx.took.Seconds(), fx.txs, float64(n)/float64(max(fx.txs, 1)))
	return fx
}

// buildImport builds a file of the fixture's recipe by the bulk path:
// IssueBatch calls of preloadChunk tokens, one transaction each.
func buildImport(b *testing.B, path string, n int) {
	b.Helper()
	ctx := context.Background()
	t0 := time.Now()
	start := time.Now()
	db, err := tokenstore.Open(path, &tokenstore.Options{SweepInterval: -1, Now: func() time.Time { return t0 }})
	require.NoError(b, err)
	reqs := fixtureRequests(n)
	for len(reqs) > 0 {
		chunk := reqs[:min(len(reqs), preloadChunk)]
		reqs = reqs[len(chunk):]
		_, err := db.IssueBatch(ctx, chunk)
		require.NoError(b, err)
	}
	require.NoError(b, db.Close())
	b.Logf("import: %d tokens by IssueBatch of %d in %s", n, preloadChunk, time.Since(start).Round(time.Millisecond))
}

// fileTxID is the id of the last transaction committed to the bbolt
// file at path: the write transactions it has seen.
func fileTxID(b *testing.B, path string) uint64 {
	b.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(b, err)
	defer func() { require.NoError(b, bdb.Close()) }()
	tx, err := bdb.Begin(false)
	require.NoError(b, err)
	defer func() { require.NoError(b, tx.Rollback()) }()
	return uint64(tx.ID())
}

// keptFixture is for working on the library: it keeps the pristine file
// and its tokens in the directory keep ($TOKENSTORE_BENCH_KEEP) across
// runs, building them when missing. Remove them after changing how the
// library writes.
func keptFixture(b *testing.B, keep, dir string, n int) *fixture {
	b.Helper()
	// "issued": built one Issue at a time (buildFixture); a kept file of
	// the earlier recipe (fixture-N, 50,000-token batches) is not reused.
	base := filepath.Join(keep, fmt.Sprintf("fixture-issued-%d", n))
	if data, err := os.ReadFile(base + ".tokens"); err == nil {
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		ms, err := strconv.ParseInt(lines[0], 10, 64)
		require.NoError(b, err)
		fx := &fixture{dir: dir, pristine: filepath.Join(dir, "pristine.db"), n: n, copies: map[string]string{}, t0: time.UnixMilli(ms), tokens: lines[1:]}
		require.Len(b, fx.tokens, n)
		copyFile(b, base+".db", fx.pristine)
		return fx
	}
	fx := buildFixture(b, dir, n)
	require.NoError(b, os.MkdirAll(keep, 0o700))
	copyFile(b, fx.pristine, base+".db")
	data := strconv.FormatInt(fx.t0.UnixMilli(), 10) + "\n" + strings.Join(fx.tokens, "\n") + "\n"
	require.NoError(b, os.WriteFile(base+".tokens", []byte(data), 0o600))
	return fx
}

// sliding returns the Sliding tokens, absolute the Absolute ones.
func (fx *fixture) sliding() []string  { return every2(fx.tokens, 0) }
func (fx *fixture) absolute() []string { return every2(fx.tokens, 1) }

func every2(s []string, from int) []string {
	out := make([]string, 0, len(s)/2+1)
	for i := from; i < len(s); i += 2 {
		out = append(out, s[i])
	}
	return out
}

// copyOf returns a private copy of the pristine file for benchmarks that
// write, made on first use of name and shared by later ones.
func (fx *fixture) copyOf(b *testing.B, name string) string {
	b.Helper()
	fx.mu.Lock()
	defer fx.mu.Unlock()
	if p, ok := fx.copies[name]; ok {
		return p
	}
	p := filepath.Join(fx.dir, strings.ReplaceAll(name, "/", "-")+".db")
	copyFile(b, fx.pristine, p)
	fx.copies[name] = p
	return p
}

// drop removes the copies made so far.
func (fx *fixture) drop(b *testing.B) {
	b.Helper()
	fx.mu.Lock()
	defer fx.mu.Unlock()
	for name, p := range fx.copies {
		require.NoError(b, os.Remove(p))
		delete(fx.copies, name)
	}
}

func copyFile(b testing.TB, from, to string) {
	b.Helper()
	src, err := os.Open(from)
	require.NoError(b, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	require.NoError(b, err)
	_, err = io.Copy(dst, src)
	require.NoError(b, err)
	// Written out now, so that the kernel's write-back of a large copy
	// does not compete with the benchmark that follows.
	require.NoError(b, dst.Sync())
	require.NoError(b, dst.Close())
}

// clockFrom is a clock that starts at t and runs at real speed.
func clockFrom(t time.Time) func() time.Time {
	origin := time.Now()
	return func() time.Time { return t.Add(time.Since(origin)) }
}

// manualClock is a clock that benchmarks move by hand.
type manualClock struct{ ns atomic.Int64 }

func newManualClock(t time.Time) *manualClock {
	c := &manualClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *manualClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *manualClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func openBench(b *testing.B, path string, o *tokenstore.Options) *tokenstore.DB {
	b.Helper()
	db, err := tokenstore.Open(path, o)
	require.NoError(b, err)
	return db
}

func closeBench(b *testing.B, db *tokenstore.DB) {
	b.Helper()
	b.StopTimer()
	require.NoError(b, db.Close())
}

// BenchmarkStore holds every benchmark of the performance table; see the
// file comment.
func BenchmarkStore(b *testing.B) {
	n := benchTokens(b)
	dir := b.TempDir()
	var (
		once sync.Once
		fx   *fixture
	)
	get := func(b *testing.B) *fixture {
		once.Do(func() {
			if keep := os.Getenv("TOKENSTORE_BENCH_KEEP"); keep != "" {
				fx = keptFixture(b, keep, dir, n)
				return
			}
			fx = buildFixture(b, dir, n)
		})
		if fx == nil {
			b.Fatal("the fixture failed to build")
		}
		return fx
	}
	b.Run("Preload", func(b *testing.B) {
		fx := get(b)
		benchPreload(b)
		if fx.took > 0 {
			b.ReportMetric(fx.took.Seconds(), "fixture-s")
			b.ReportMetric(float64(fx.n)/float64(max(fx.txs, 1)), "fixture-tokens/tx")
		}
	})
	b.Run("Validate", func(b *testing.B) { benchValidate(b, get) })
	b.Run("Flush", func(b *testing.B) { benchFlush(b, get) })
	b.Run("Issue", func(b *testing.B) { benchIssue(b, get) })
	b.Run("Sweep", func(b *testing.B) { benchSweep(b, get) })
	b.Run("Open", func(b *testing.B) { benchOpen(b, get) })
	b.Run("Interference", func(b *testing.B) { benchInterference(b, get) })
	b.Run("FileSize", func(b *testing.B) { benchFileSize(b, get) })
}

// benchPreload reports the bulk path's rate on a fresh file: 20,000-token
// IssueBatch calls, each one durable transaction.
func benchPreload(b *testing.B) {
	ctx := context.Background()
	reqs := make([]tokenstore.IssueRequest, preloadChunk)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: fmt.Sprintf("user-%08d", i/4)}
	}
	b.ReportAllocs()
	db := openBench(b, filepath.Join(b.TempDir(), "preload.db"), &tokenstore.Options{SweepInterval: -1})
	for b.Loop() {
		_, err := db.IssueBatch(ctx, reqs)
		require.NoError(b, err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*preloadChunk), "ns/token")
	closeBench(b, db)
}

// leafDB opens a store on the first run of a benchmark and keeps it for
// the later ones (RunParallel runs a benchmark several times, growing
// b.N): the pages of the file are mapped, and the cache warmed, once.
type leafDB struct {
	open func(b *testing.B) *tokenstore.DB
	db   *tokenstore.DB
}

func (l *leafDB) get(b *testing.B) *tokenstore.DB {
	b.Helper()
	if l.db == nil {
		l.db = l.open(b)
	}
	return l.db
}

func (l *leafDB) close(b *testing.B) {
	b.Helper()
	if l.db != nil {
		require.NoError(b, l.db.Close())
		l.db = nil
	}
}

func benchValidate(b *testing.B, get func(*testing.B) *fixture) {
	fx := get(b)
	defer fx.drop(b)
	sliding, absolute := fx.sliding(), fx.absolute()
	hot := func(s []string) []string { return s[:min(len(s), hotTokens)] }
	b.Run("returning", func(b *testing.B) { benchReturning(b, fx) })
	// leaf runs a Validate benchmark on its own copy of the file, with a
	// clock that starts where the preload's stopped: every token was last
	// used less than TouchInterval ago, the steady state of a server whose
	// clients come back within a minute (writes/op shows that it held).
	// "idle-first-use" measures the rest.
	leaf := func(name string, set []string, warm bool, o tokenstore.Options) {
		l := &leafDB{open: func(b *testing.B) *tokenstore.DB {
			if o.Now == nil {
				o.Now = clockFrom(fx.t0.Add(time.Millisecond))
			}
			path := fx.pristine
			if o.Now().After(fx.t0) {
				path = fx.copyOf(b, name) // uses will be written
			}
			db := openBench(b, path, &o)
			if warm {
				for _, t := range set {
					_, err := db.Validate(context.Background(), t)
					require.NoError(b, err)
				}
			}
			return db
		}}
		b.Run(name, func(b *testing.B) { runValidate(b, l.get(b), set) })
		l.close(b)
	}

	// The targets.
	leaf("sliding/cached", hot(sliding), true, tokenstore.Options{SweepInterval: -1})
	leaf("absolute/cached", hot(absolute), true, tokenstore.Options{SweepInterval: -1})
	// Any of the sliding tokens, default cache, starting cold.
	leaf("sliding/uniform", sliding, false, tokenstore.Options{SweepInterval: -1})
	// Every call reads the file: no cache, and a clock held at the
	// preload's, so that no use is pending (a pending use keeps its record
	// in memory until it is written).
	leaf("sliding/miss", sliding, false, tokenstore.Options{SweepInterval: -1, CacheSize: -1, Now: func() time.Time { return fx.t0 }})
	// Each call validates a token idle for 2 × TouchInterval, a different
	// one each time until every sliding token has had its turn (%hits
	// says how many calls came after that, answered from the cache).
	idle := &leafDB{open: func(b *testing.B) *tokenstore.DB {
		return openBench(b, fx.copyOf(b, "idle"), &tokenstore.Options{SweepInterval: -1, Now: clockFrom(fx.t0.Add(2 * time.Minute))})
	}}
	var next atomic.Int64
	b.Run("sliding/idle-first-use", func(b *testing.B) {
		db := idle.get(b)
		st0 := db.Stats()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(next.Add(1)-1) % len(sliding)
				if _, err := db.Validate(context.Background(), sliding[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		st := db.Stats()
		hits, misses := st.CacheHits-st0.CacheHits, st.CacheMisses-st0.CacheMisses
		b.ReportMetric(100*float64(hits)/float64(max(hits+misses, 1)), "%hits")
		b.ReportMetric(float64(st.TouchWrites-st0.TouchWrites)/float64(b.N), "writes/op")
	})
	idle.close(b)

	// The baselines.
	leaf("touch-every-use", sliding, false, tokenstore.Options{SweepInterval: -1, TouchInterval: -1})
	keys := make([][]byte, len(sliding))
	for i, t := range sliding {
		keys[i] = hashOf(b, t)
	}
	var bdb *bolt.DB
	b.Run("bbolt-view-get", func(b *testing.B) {
		if bdb == nil {
			var err error
			bdb, err = bolt.Open(fx.pristine, 0o600, nil)
			require.NoError(b, err)
		}
		viewGetLoop(b, bdb, keys)
	})
	if bdb != nil {
		require.NoError(b, bdb.Close())
	}
}

var benchFormat, _ = tokenstore.NewFormat("")

func hashOf(b *testing.B, token string) []byte {
	h, err := benchFormat.Parse(token)
	require.NoError(b, err)
	return h[:]
}

// runValidate validates random tokens of set from GOMAXPROCS goroutines.
func runValidate(b *testing.B, db *tokenstore.DB, set []string) {
	ctx := context.Background()
	st0 := db.Stats()
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := mrand.New(mrand.NewPCG(seed.Add(1), 0))
		for pb.Next() {
			if _, err := db.Validate(ctx, set[r.IntN(len(set))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := db.Stats()
	hits, misses := st.CacheHits-st0.CacheHits, st.CacheMisses-st0.CacheMisses
	b.ReportMetric(100*float64(hits)/float64(max(hits+misses, 1)), "%hits")
	b.ReportMetric(float64(st.TouchWrites-st0.TouchWrites)/float64(b.N), "writes/op")
}

func benchIssue(b *testing.B, get func(*testing.B) *fixture) {
	fx := get(b)
	defer fx.drop(b)
	ctx := context.Background()
	path := fx.copyOf(b, "issue")
	opts := &tokenstore.Options{SweepInterval: -1}
	var i atomic.Int64 // subjects: bench-1, bench-2, ...

	l := &leafDB{open: func(b *testing.B) *tokenstore.DB { return openBench(b, path, opts) }}
	b.Run("serial", func(b *testing.B) {
		db := l.get(b)
		b.ReportAllocs()
		for b.Loop() {
			_, _, err := db.Issue(ctx, fmt.Sprintf("bench-%08d", i.Add(1)))
			require.NoError(b, err)
		}
	})
	b.Run("parallel-64", func(b *testing.B) {
		db := l.get(b)
		b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := db.Issue(ctx, fmt.Sprintf("bench-%08d", i.Add(1))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	l.close(b)

	b.Run("bbolt-update-one-key", func(b *testing.B) {
		// The floor: one fsync'd Update putting one random key into the
		// same 1M-key tokens bucket, with bbolt's default options. The
		// keys are deleted afterwards, untimed.
		bdb, err := bolt.Open(path, 0o600, nil)
		require.NoError(b, err)
		val := make([]byte, 70)
		var keys [][]byte
		b.ReportAllocs()
		for b.Loop() {
			key := make([]byte, 32)
			_, _ = rand.Read(key)
			keys = append(keys, key)
			require.NoError(b, bdb.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("tokens")).Put(key, val)
			}))
		}
		b.StopTimer()
		require.NoError(b, bdb.Update(func(tx *bolt.Tx) error {
			for _, k := range keys {
				if err := tx.Bucket([]byte("tokens")).Delete(k); err != nil {
					return err
				}
			}
			return nil
		}))
		require.NoError(b, bdb.Close())
	})
}

// txRecorder is a slog.Handler that keeps the "took" of the sweep's
// per-transaction debug records.
type txRecorder struct {
	msg              string // "": the sweep's
	mu               sync.Mutex
	took             []time.Duration
	deleted, written int64
	io, scan         time.Duration // the sweep's: bbolt's writes and fsyncs, and its scans
	passes           [4]passStats  // the sweep's, by pass (sweepsize.go): subjects, records, ids, expiry
}

// passStats sums one sweep pass's transactions.
type passStats struct {
	tx, size, written int64
	took, io          time.Duration
}

func (r *txRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *txRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *txRecorder) WithGroup(string) slog.Handler            { return r }
func (r *txRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msg == "" && rec.Message == "tokenstore: sweep scan" {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "took" {
				r.scan += a.Value.Duration()
			}
			return true
		})
		return nil
	}
	if want := cmp.Or(r.msg, "tokenstore: sweep transaction"); rec.Message != want {
		return nil
	}
	var p passStats
	pass := -1
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "pass":
			pass = int(a.Value.Int64())
		case "size":
			p.size = a.Value.Int64()
		case "took":
			p.took = a.Value.Duration()
			r.took = append(r.took, a.Value.Duration())
		case "deleted":
			r.deleted += a.Value.Int64()
		case "written":
			p.written = a.Value.Int64()
			r.written += a.Value.Int64()
		case "io":
			p.io = a.Value.Duration()
			r.io += a.Value.Duration()
		}
		return true
	})
	if pass >= 0 && pass < len(r.passes) {
		q := &r.passes[pass]
		q.tx++
		q.size += p.size
		q.written += p.written
		q.took += p.took
		q.io += p.io
	}
	return nil
}

// logPasses logs each sweep pass's transactions, items, time (of it
// bbolt's writes and fsyncs, io) and bytes written, per op of ops; r.mu
// held.
func (r *txRecorder) logPasses(tb testing.TB, ops int) {
	tb.Helper()
	n := float64(ops)
	for i, name := range []string{"subjects", "records", "ids", "expiry"} {
		p := r.passes[i]
		tb.Logf("pass %-8s %6.0f tx  %8.0f items  %6.3f s (io %6.3f s)  %6.1f MB written (per op)",
			name, float64(p.tx)/n, float64(p.size)/n, p.took.Seconds()/n, p.io.Seconds()/n, float64(p.written)/n/1e6)
	}
}

// ms is d in milliseconds, to the µs, for b.ReportMetric.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// over20ms counts the durations over issue 10's bound: no Issue waits more
// than 20 ms behind a sweep or flush transaction.
func over20ms(ds []time.Duration) int {
	n := 0
	for _, d := range ds {
		if d > 20*time.Millisecond {
			n++
		}
	}
	return n
}

// report adds the sweep transactions' longest, p99 and share over 20 ms.
func (r *txRecorder) report(b *testing.B) {
	r.mu.Lock()
	defer r.mu.Unlock()
	over := over20ms(r.took)
	b.ReportMetric(ms(percentile(r.took, 1)), "max-tx-ms")
	b.ReportMetric(ms(percentile(r.took, 0.99)), "p99-tx-ms")
	b.ReportMetric(100*float64(over)/float64(max(len(r.took), 1)), "%tx>20ms")
	b.ReportMetric(float64(len(r.took))/float64(b.N), "tx/op")
	b.ReportMetric(float64(r.written)/1024/float64(max(r.deleted, 1)), "KB-written/token")
	if r.msg == "" {
		var took time.Duration
		for _, d := range r.took {
			took += d
		}
		// Where a sweep's time goes: reading what is due, and the
		// transactions' writes and fsyncs (bbolt's TxStats.WriteTime) of
		// their whole time.
		b.ReportMetric(r.scan.Seconds()/float64(b.N), "scan-s/op")
		b.ReportMetric(took.Seconds()/float64(b.N), "tx-s/op")
		b.ReportMetric(100*float64(r.io)/float64(max(took, 1)), "%tx-in-io")
		r.logPasses(b, b.N)
	}
}

// addExpired adds n tokens that expire one second after clk's now.
func addExpired(b *testing.B, db *tokenstore.DB, n int) {
	b.Helper()
	reqs := make([]tokenstore.IssueRequest, 0, 10_000)
	for done := 0; done < n; done += len(reqs) {
		reqs = reqs[:0]
		for i := done; i < n && len(reqs) < cap(reqs); i++ {
			reqs = append(reqs, tokenstore.IssueRequest{Subject: fmt.Sprintf("user-%08d", i%(n/4+1)), Policy: tokenstore.Absolute(time.Second)})
		}
		_, err := db.IssueBatch(context.Background(), reqs)
		require.NoError(b, err)
	}
}

func benchSweep(b *testing.B, get func(*testing.B) *fixture) {
	fx := get(b)
	ctx := context.Background()
	// sweepOnly measures deleting expired tokens, each round adding them
	// first (not timed) and moving the clock past their deadline.
	sweepOnly := func(b *testing.B, path string, expired int) {
		clk := newManualClock(fx.t0.Add(time.Millisecond))
		rec := &txRecorder{}
		db := openBench(b, path, &tokenstore.Options{SweepInterval: -1, Now: clk.Now, Logger: slog.New(rec)})
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			addExpired(b, db, expired)
			clk.Advance(2 * time.Second)
			b.StartTimer()
			n, err := db.Sweep(ctx)
			require.NoError(b, err)
			require.Equal(b, expired, n)
		}
		rec.report(b)
		closeBench(b, db)
	}
	b.Run("10k-of-10k", func(b *testing.B) {
		sweepOnly(b, filepath.Join(b.TempDir(), "small.db"), 10_000)
	})
	b.Run("10k-of-1M", func(b *testing.B) {
		sweepOnly(b, fx.copyOf(b, "sweep"), 10_000)
	})
	b.Run("none-of-1M", func(b *testing.B) {
		// Nothing has expired: the sweep reads one key and writes nothing.
		db := openBench(b, fx.copyOf(b, "sweep"), &tokenstore.Options{SweepInterval: -1})
		b.ReportAllocs()
		for b.Loop() {
			n, err := db.Sweep(ctx)
			require.NoError(b, err)
			require.Zero(b, n)
		}
		closeBench(b, db)
	})
	b.Run("100k-of-1M", func(b *testing.B) {
		// Validate p99 from one goroutine during the sweep, then without
		// it, each on a freshly opened store (so that the cache fills the
		// same way) and over the same number of calls: random Sliding
		// tokens among all of them, default cache.
		clk := newManualClock(fx.t0.Add(time.Millisecond))
		rec := &txRecorder{}
		path := fx.copyOf(b, "sweep")
		opts := &tokenstore.Options{SweepInterval: -1, Now: clk.Now, Logger: slog.New(rec)}
		sliding := fx.sliding()
		var lat sweepLatencies
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			db := openBench(b, path, opts)
			addExpired(b, db, 100_000)
			clk.Advance(2 * time.Second)
			lat.measure(b, db, path, opts, sliding, 100_000)
			b.StartTimer()
		}
		b.StopTimer()
		rec.report(b)
		lat.report(b)
	})
	b.Run("100k-of-1M-scattered", func(b *testing.B) {
		// The sweep users also have: not a batch issued together and
		// expiring together, but Sliding tokens of the fixture that went
		// idle, scattered among the rest. 400,000 of its ~500,000
		// Sliding tokens are used an hour before their idle window ends
		// (written by Close, as the background writer would have), and
		// the clock moves past it: the other ~100,000 expire, at random
		// places in every tree, and the sweep re-files the 400,000
		// whose expiry entries (lower bounds, bucket.go) fell due. Validate
		// p99 during it (the 400,000 alive) beside the same number
		// without it, on a reopened store, as in 100k-of-1M.
		sliding := fx.sliding()
		perm := mrand.New(mrand.NewPCG(7, 8)).Perm(len(sliding))
		used := make([]string, 0, len(sliding))
		for _, i := range perm[:len(sliding)*4/5] {
			used = append(used, sliding[i])
		}
		idleWindow := 14 * 24 * time.Hour // the default Sliding policy's
		rec := &txRecorder{}
		var lat sweepLatencies
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			path := filepath.Join(b.TempDir(), "scattered.db")
			copyFile(b, fx.pristine, path)
			clk := newManualClock(fx.t0.Add(idleWindow - time.Hour))
			opts := &tokenstore.Options{SweepInterval: -1, Now: clk.Now, Logger: slog.New(rec)}
			db := openBench(b, path, opts)
			for _, t := range used {
				_, err := db.Validate(ctx, t)
				require.NoError(b, err)
			}
			require.NoError(b, db.Close())
			clk.Set(fx.t0.Add(idleWindow + time.Second))
			db = openBench(b, path, opts)
			lat.measure(b, db, path, opts, used, len(sliding)-len(used))
			require.NoError(b, os.Remove(path))
			b.StartTimer()
		}
		b.StopTimer()
		rec.report(b)
		lat.report(b)
	})
	b.Run("100k-of-1M-issue-wait", func(b *testing.B) {
		// How long an Issue waits behind the sweep's transactions: Issues
		// one after the other from one goroutine during the sweep of
		// 100,000 tokens among 1M, then as many without it. Each Issue's
		// time includes its own commit (two fsyncs); the difference is
		// the wait for the writer lock.
		clk := newManualClock(fx.t0.Add(time.Millisecond))
		path := fx.copyOf(b, "sweep-issue-wait")
		opts := &tokenstore.Options{SweepInterval: -1, Now: clk.Now}
		var idle, during []time.Duration
		var waits waitRecorder
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			db := openBench(b, path, opts)
			addExpired(b, db, 100_000)
			clk.Advance(2 * time.Second)
			tokenstore.SetWriteWaitHook(db, waits.add)
			var n int
			lat, idleLat, err := issueWait(b, db, &waits, func() (err error) {
				n, err = db.Sweep(ctx)
				return err
			})
			require.NoError(b, err)
			require.Equal(b, 100_000, n)
			during = append(during, lat...)
			idle = append(idle, idleLat...)
			require.NoError(b, db.Close())
			b.StartTimer()
		}
		b.StopTimer()
		waits.report(b, "sweep")
		over := func(d []time.Duration) float64 { return 100 * float64(over20ms(d)) / float64(max(len(d), 1)) }
		b.ReportMetric(float64(len(during))/float64(b.N), "issues/op")
		b.ReportMetric(ms(percentile(idle, 0.5)), "issue-p50-idle-ms")
		b.ReportMetric(ms(percentile(during, 0.5)), "issue-p50-sweep-ms")
		b.ReportMetric(ms(percentile(idle, 0.99)), "issue-p99-idle-ms")
		b.ReportMetric(ms(percentile(during, 0.99)), "issue-p99-sweep-ms")
		b.ReportMetric(ms(percentile(idle, 1)), "issue-max-idle-ms")
		b.ReportMetric(ms(percentile(during, 1)), "issue-max-sweep-ms")
		b.ReportMetric(over(idle), "%issue>20ms-idle")
		b.ReportMetric(over(during), "%issue>20ms-sweep")
	})
	fx.drop(b)
}

// waitRecorder keeps the waits of the Issues (calls of the committer
// that are not solo) that tokenstore.SetWriteWaitHook reports: from the
// call's enqueue to the start of its transaction, without its own commit.
// Issue's whole latency includes its own two fsyncs; this is the part the
// target bounds ("no Issue waits more than 20 ms behind a sweep or flush
// transaction").
type waitRecorder struct {
	mu          sync.Mutex
	on          bool
	idle, other []time.Duration // outside and during the measured call
}

func (w *waitRecorder) add(d time.Duration, solo bool) {
	if solo {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.on {
		w.other = append(w.other, d)
	} else {
		w.idle = append(w.idle, d)
	}
}

func (w *waitRecorder) during(on bool) {
	w.mu.Lock()
	w.on = on
	w.mu.Unlock()
}

// report adds the waits' p99, longest and share over 20 ms, during the
// call (named what) and outside it.
func (w *waitRecorder) report(b *testing.B, what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range []struct {
		name string
		d    []time.Duration
	}{{"idle", w.idle}, {what, w.other}} {
		over := over20ms(x.d)
		b.ReportMetric(ms(percentile(x.d, 0.99)), "wait-p99-"+x.name+"-ms")
		b.ReportMetric(ms(percentile(x.d, 1)), "wait-max-"+x.name+"-ms")
		b.ReportMetric(float64(over), "waits>20ms-"+x.name)
	}
}

// issueWait times call while one goroutine issues tokens one at a time,
// waits counting the Issues' waits as during call, then issues as many
// again with nothing else running. It returns the Issues' latencies
// during call and after it, and call's error. The timer must be stopped.
func issueWait(b *testing.B, db *tokenstore.DB, waits *waitRecorder, call func() error) (during, idle []time.Duration, err error) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		during = issueLatencies(b, db, 0, stop)
	}()
	waits.during(true)
	b.StartTimer()
	err = call()
	b.StopTimer()
	close(stop)
	<-done
	waits.during(false)
	return during, issueLatencies(b, db, len(during), nil), err
}

// sweepLatencies are the Validate latencies of Sweep's 100k-of-1M
// benchmarks: during each sweep, and as many on the store reopened with
// nothing else running.
type sweepLatencies struct {
	idle, during []time.Duration
	gcs          uint32 // garbage collections during the sweeps
}

// measure times db's Sweep while one goroutine validates random tokens of
// set one after the other, requires that it swept want tokens, closes db,
// reopens path with opts and validates as many again. The timer must be
// stopped.
func (s *sweepLatencies) measure(b *testing.B, db *tokenstore.DB, path string, opts *tokenstore.Options, set []string, want int) {
	stop, done := make(chan struct{}), make(chan struct{})
	var lat []time.Duration
	go func() {
		defer close(done)
		lat = validateLatencies(b, db, set, 0, stop)
	}()
	b.StartTimer()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	n, err := db.Sweep(context.Background())
	runtime.ReadMemStats(&m1)
	b.StopTimer()
	close(stop)
	<-done
	s.gcs += m1.NumGC - m0.NumGC
	require.NoError(b, err)
	require.Equal(b, want, n)
	require.NoError(b, db.Close())
	s.during = append(s.during, lat...)

	db = openBench(b, path, opts)
	s.idle = append(s.idle, validateLatencies(b, db, set, len(lat), nil)...)
	require.NoError(b, db.Close())
}

// report adds the Validate p99s idle and during the sweeps, their ratio,
// and the garbage collections per sweep.
func (s *sweepLatencies) report(b *testing.B) {
	p99i, p99d := percentile(s.idle, 0.99), percentile(s.during, 0.99)
	b.ReportMetric(float64(p99i.Nanoseconds()), "p99-idle-ns")
	b.ReportMetric(float64(p99d.Nanoseconds()), "p99-sweep-ns")
	b.ReportMetric(float64(p99d)/float64(p99i), "p99-ratio")
	b.ReportMetric(excessSlow(s.during, p99i)/float64(b.N), "slow-validates/op")
	b.ReportMetric(float64(s.gcs)/float64(b.N), "gc/op")
}

// excessSlow is how many more of the Validates timed during a sweep or
// a flush (during) took longer than the p99 of those without it (p99i)
// than the 1% expected: the requests it slowed, whatever its length.
// The p99 ratio alone flatters a pass that pauses: stretched 2.5 times
// by pauses in which nothing competes, it spreads the same slowed calls
// over 2.5 times as many, and its p99 falls while no fewer users waited
// (over a minute's traffic, their p99 is the same). This count falls
// only if the pass slows fewer calls.
func excessSlow(during []time.Duration, p99i time.Duration) float64 {
	slow := 0
	for _, d := range during {
		if d > p99i {
			slow++
		}
	}
	return float64(slow) - 0.01*float64(len(during))
}

// hitRate adds up the cache hits and misses of Stats windows.
type hitRate struct{ hits, misses uint64 }

func (r *hitRate) add(from, to tokenstore.Stats) {
	r.hits += to.CacheHits - from.CacheHits
	r.misses += to.CacheMisses - from.CacheMisses
}

func (r *hitRate) percent() float64 {
	return 100 * float64(r.hits) / float64(max(r.hits+r.misses, 1))
}

// issueLatencies issues tokens one at a time, n of them, or until stop is
// closed when n is 0, and returns each call's time.
func issueLatencies(b *testing.B, db *tokenstore.DB, n int, stop <-chan struct{}) []time.Duration {
	ctx := context.Background()
	var out []time.Duration
	for i := 0; n == 0 || i < n; i++ {
		if stop != nil {
			select {
			case <-stop:
				return out
			default:
			}
		}
		start := time.Now()
		_, _, err := db.Issue(ctx, fmt.Sprintf("issue-wait-%08d", i))
		out = append(out, time.Since(start))
		if err != nil {
			b.Error(err)
			return out
		}
	}
	return out
}

// validateLatencies validates random tokens of set one at a time, n of
// them, or until stop is closed when n is 0, and returns each call's time.
func validateLatencies(b *testing.B, db *tokenstore.DB, set []string, n int, stop <-chan struct{}) []time.Duration {
	ctx := context.Background()
	r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 0))
	out := make([]time.Duration, 0, max(n, 1<<16))
	for i := 0; n == 0 || i < n; i++ {
		if stop != nil {
			select {
			case <-stop:
				return out
			default:
			}
		}
		t := set[r.IntN(len(set))]
		start := time.Now()
		_, err := db.Validate(ctx, t)
		out = append(out, time.Since(start))
		if err != nil {
			b.Error(err)
			return out
		}
	}
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func benchOpen(b *testing.B, get func(*testing.B) *fixture) {
	fx := get(b)
	b.ReportAllocs()
	for b.Loop() {
		db, err := tokenstore.Open(fx.pristine, &tokenstore.Options{SweepInterval: -1})
		require.NoError(b, err)
		require.NoError(b, db.Close())
	}
}

// benchFileSize reports bytes per token of a file of the fixture's
// recipe (every index included) as built, and after Compact (ns/op is
// Compact's time), for both ways tokens arrive:
//
//	issued-64-writers:   the fixture, one Issue per token from 64
//	                     goroutines (group committed): an application's
//	                     logins. The issue's target is this one.
//	import-50k-batches:  IssueBatch of 50,000 tokens per transaction, a
//	                     bulk import: each batch leaves most leaves of the
//	                     random-order trees free (copy-on-write), so the
//	                     file is larger until compacted.
func benchFileSize(b *testing.B, get func(*testing.B) *fixture) {
	b.Run("issued-64-writers", func(b *testing.B) {
		fx := get(b)
		fileSizeBench(b, fx.pristine, fx.n)
	})
	b.Run("import-50k-batches", func(b *testing.B) {
		n := benchTokens(b)
		path := filepath.Join(b.TempDir(), "import.db")
		if keep := os.Getenv("TOKENSTORE_BENCH_KEEP"); keep != "" {
			kept := filepath.Join(keep, fmt.Sprintf("import-%d.db", n))
			if _, err := os.Stat(kept); err != nil {
				buildImport(b, kept, n)
			}
			copyFile(b, kept, path)
		} else {
			buildImport(b, path, n)
		}
		fileSizeBench(b, path, n)
	})
}

func fileSizeBench(b *testing.B, path string, n int) {
	st, err := os.Stat(path)
	require.NoError(b, err)
	var after int64
	p := filepath.Join(b.TempDir(), "compact.db")
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		copyFile(b, path, p)
		b.StartTimer()
		before, a, err := tokenstore.Compact(p, nil)
		require.NoError(b, err)
		require.Equal(b, st.Size(), before)
		after = a
		b.StopTimer()
		require.NoError(b, os.Remove(p))
		b.StartTimer()
	}
	b.ReportMetric(float64(st.Size())/float64(n), "bytes/token")
	b.ReportMetric(float64(after)/float64(n), "bytes/token-compacted")
}

// roundClock is the clock of the returning-user benchmarks: every op takes
// the next token of a shuffled list, and each pass over the list happens
// 2 × TouchInterval (default 1 minute) after the one before, so that every
// token validated is a returning one: its stored last use lags the clock by
// more than TouchInterval.
type roundClock struct {
	start time.Time
	step  time.Duration
	len   int64
	ops   atomic.Int64
}

func (c *roundClock) Now() time.Time {
	return c.start.Add(time.Duration((c.ops.Load())/c.len) * c.step)
}

// next returns the index of the op's token.
func (c *roundClock) next() int { return int((c.ops.Add(1) - 1) % c.len) }

func shuffled(s []string, seed uint64) []string {
	out := slices.Clone(s)
	mrand.New(mrand.NewPCG(seed, 3)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// benchReturning is the traffic real servers see: a token used again
// after an idle spell longer than TouchInterval (a person back from lunch,
// a device that polls every five minutes), default Options.
//
//	cold: the store just opened (empty cache), every token of the file
//	      idle 10 minutes, each validated once in a random order (%hits
//	      shows the share that came back to a token already seen).
//	warm: hotTokens tokens already in the cache, each validated in turn,
//	      every pass 2 minutes after the one before.
//	bbolt-view-get: the floor, a bare bbolt View+Get of a random key of the
//	      same file, from as many goroutines.
func benchReturning(b *testing.B, fx *fixture) {
	ctx := context.Background()
	run := func(b *testing.B, db *tokenstore.DB, clk *roundClock, set []string) {
		st0 := db.Stats()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := db.Validate(ctx, set[clk.next()]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		st := db.Stats()
		hits, misses := st.CacheHits-st0.CacheHits, st.CacheMisses-st0.CacheMisses
		b.ReportMetric(100*float64(hits)/float64(max(hits+misses, 1)), "%hits")
		b.ReportMetric(float64(st.TouchWrites-st0.TouchWrites)/float64(b.N), "writes/op")
	}

	all := shuffled(fx.tokens, 1)
	cold := &roundClock{start: fx.t0.Add(10 * time.Minute), step: 2 * time.Minute, len: int64(len(all))}
	coldDB := &leafDB{open: func(b *testing.B) *tokenstore.DB {
		return openBench(b, fx.copyOf(b, "returning-cold"), &tokenstore.Options{SweepInterval: -1, Now: cold.Now})
	}}
	b.Run("cold", func(b *testing.B) { run(b, coldDB.get(b), cold, all) })
	coldDB.close(b)

	benchViewGet(b, fx, "bbolt-view-get")

	hot := shuffled(fx.sliding()[:min(len(fx.sliding()), hotTokens)], 2)
	warm := &roundClock{start: fx.t0.Add(time.Millisecond), step: 2 * time.Minute, len: int64(len(hot))}
	warmDB := &leafDB{open: func(b *testing.B) *tokenstore.DB {
		db := openBench(b, fx.copyOf(b, "returning-warm"), &tokenstore.Options{SweepInterval: -1, Now: warm.Now})
		for _, t := range hot { // fills the cache; the clock does not move
			_, err := db.Validate(ctx, t)
			require.NoError(b, err)
		}
		warm.ops.Store(int64(len(hot))) // the next pass is 2 minutes later
		return db
	}}
	b.Run("warm", func(b *testing.B) { run(b, warmDB.get(b), warm, hot) })
	warmDB.close(b)

	b.Run("interleaved", func(b *testing.B) { benchReturningInterleaved(b, fx) })
}

// benchReturningInterleaved measures cold, warm and the floor in turns of
// 2,000 calls each (from GOMAXPROCS goroutines), rotating their order, so
// that a machine whose load changes from second to second weighs on the
// three alike; it reports each one's ns/op and the two ratios to the
// floor. cold, warm and bbolt-view-get above measure the same calls one
// after the other, with their allocations.
func benchReturningInterleaved(b *testing.B, fx *fixture) {
	ctx := context.Background()
	const turn, turns = 2000, 30
	all := shuffled(fx.tokens, 5) // cold for 1M calls: %hits says whether it stayed so
	cold := &roundClock{start: fx.t0.Add(10 * time.Minute), step: 2 * time.Minute, len: int64(len(all))}
	coldDB := openBench(b, fx.copyOf(b, "returning-interleaved-cold"), &tokenstore.Options{SweepInterval: -1, Now: cold.Now})
	defer func() { require.NoError(b, coldDB.Close()) }()
	hot := shuffled(fx.sliding()[:min(len(fx.sliding()), hotTokens)], 6)
	warm := &roundClock{start: fx.t0.Add(time.Millisecond), step: 2 * time.Minute, len: int64(len(hot))}
	warmDB := openBench(b, fx.copyOf(b, "returning-interleaved-warm"), &tokenstore.Options{SweepInterval: -1, Now: warm.Now})
	defer func() { require.NoError(b, warmDB.Close()) }()
	for _, t := range hot {
		_, err := warmDB.Validate(ctx, t)
		require.NoError(b, err)
	}
	warm.ops.Store(int64(len(hot)))
	// The floor takes its keys as cold takes its tokens: the next of a
	// shuffled list, by an atomic counter, so that neither pays for its
	// choice more than the other (a shared rand.Rand needs a lock).
	keys := make([][]byte, len(fx.tokens))
	for i, t := range shuffled(fx.tokens, 7) {
		keys[i] = hashOf(b, t)
	}
	var floor atomic.Int64
	bdb, err := bolt.Open(fx.pristine, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(b, err)
	defer func() { require.NoError(b, bdb.Close()) }()

	procs := runtime.GOMAXPROCS(0)
	// timed runs op(i) for i in [0, turn) from procs goroutines.
	timed := func(op func(i int) error) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < turn; i = int(next.Add(1) - 1) {
					if err := op(i); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	kinds := []func(r int) time.Duration{
		func(int) time.Duration { // cold
			return timed(func(int) error { _, err := coldDB.Validate(ctx, all[cold.next()]); return err })
		},
		func(int) time.Duration { // floor
			return timed(func(int) error {
				k := keys[floor.Add(1)%int64(len(keys))]
				return bdb.View(func(tx *bolt.Tx) error {
					if tx.Bucket([]byte("tokens")).Get(k) == nil {
						return fmt.Errorf("key %x not found", k[:4])
					}
					return nil
				})
			})
		},
		func(int) time.Duration { // warm
			return timed(func(int) error { _, err := warmDB.Validate(ctx, hot[warm.next()]); return err })
		},
	}
	var took [3]time.Duration
	b.ResetTimer()
	for b.Loop() {
		for r := range turns {
			for j := range kinds {
				k := (r + j) % len(kinds)
				took[k] += kinds[k](r)
			}
		}
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*turns*turn) }
	b.ReportMetric(per(took[0]), "cold-ns/op")
	b.ReportMetric(per(took[1]), "floor-ns/op")
	b.ReportMetric(per(took[2]), "warm-ns/op")
	b.ReportMetric(per(took[1])/per(took[0]), "cold-x-floor")
	b.ReportMetric(per(took[1])/per(took[2]), "warm-x-floor")
	st := coldDB.Stats()
	b.ReportMetric(100*float64(st.CacheHits)/float64(max(st.CacheHits+st.CacheMisses, 1)), "cold-%hits")
}

// benchViewGet is the floor of a Validate that reads the file: a bare
// bbolt View+Get of a random key of the fixture's tokens bucket, from
// GOMAXPROCS goroutines, bbolt's default options.
func benchViewGet(b *testing.B, fx *fixture, name string) {
	keys := make([][]byte, len(fx.tokens))
	for i, t := range fx.tokens {
		keys[i] = hashOf(b, t)
	}
	bdb, err := bolt.Open(fx.pristine, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(b, err)
	defer func() { require.NoError(b, bdb.Close()) }()
	b.Run(name, func(b *testing.B) { viewGetLoop(b, bdb, keys) })
}

// viewGetLoop is the read floor's loop: a bbolt View+Get of a random one
// of keys per call, from GOMAXPROCS goroutines.
func viewGetLoop(b *testing.B, bdb *bolt.DB, keys [][]byte) {
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := mrand.New(mrand.NewPCG(seed.Add(1), 0))
		for pb.Next() {
			k := keys[r.IntN(len(keys))]
			err := bdb.View(func(tx *bolt.Tx) error {
				if tx.Bucket([]byte("tokens")).Get(k) == nil {
					return fmt.Errorf("key %x not found", k[:4])
				}
				return nil
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// procWchar is the bytes this process has passed to write(2) and its
// kin: what bbolt wrote to the file (pages and meta), nothing else here.
func procWchar(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	require.NoError(b, err)
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(b, err)
			return n
		}
	}
	b.Fatal("no wchar in /proc/self/io")
	return 0
}

// flusher is DB.Flush, where this build has it.
type flusher interface {
	Flush(context.Context) error
}

// sameCache drops db's clean cache entries, where this build can
// (DB.DropCleanCache, export_test.go), and collects the garbage, so that
// a run starts from the cache and heap another run started from: only
// the uses not yet written stay cached.
func sameCache(db *tokenstore.DB) {
	if d, ok := any(db).(interface{ DropCleanCache() }); ok {
		d.DropCleanCache()
	}
	runtime.GC()
}

// benchFlush measures the background writer on its real load: 100,000
// returning users' uses pending among 1M tokens, written by one Flush.
// It reports the bytes bbolt wrote per use persisted (write(2) bytes,
// pages and meta pages), and Validate p99 from one goroutine while the
// flush runs beside the same number of Validates without it.
func benchFlush(b *testing.B, get func(*testing.B) *fixture) {
	fx := get(b)
	defer fx.drop(b)
	ctx := context.Background()
	b.Run("100k-of-1M", func(b *testing.B) {
		clk := newManualClock(fx.t0.Add(time.Millisecond))
		rec := &txRecorder{msg: "tokenstore: flush transaction"}
		db := openBench(b, fx.copyOf(b, "flush"), &tokenstore.Options{SweepInterval: -1, Now: clk.Now, Logger: slog.New(rec)})
		f, ok := any(db).(flusher)
		if !ok {
			require.NoError(b, db.Close())
			b.Skip("this build has no DB.Flush")
		}
		sliding := fx.sliding()
		rng := mrand.New(mrand.NewPCG(4, 5))
		var idle, during []time.Duration
		var wrote, persisted int64
		var flushTx []time.Duration
		var hitsDuring, hitsIdle hitRate
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			clk.Advance(30 * time.Second)
			perm := rng.Perm(len(sliding))
			users, others := perm[:min(100_000, len(perm)/2)], perm[len(perm)/2:]
			for _, i := range users {
				_, err := db.Validate(ctx, sliding[i])
				require.NoError(b, err)
			}
			// Two disjoint sets of tokens this store has not validated
			// this round, one for the Validates beside the flush and one
			// for those without it, so that both start from the same
			// cache: with one set, the Validates without the flush found
			// in memory those made beside it, were hits more often, and
			// their p99 read lower (3.1-4.1x for a single flush, 1.3-1.5x
			// averaged over two).
			duringSet, idleSet := make([]string, 0, len(others)/2), make([]string, 0, len(others)/2)
			for j, i := range others {
				if j%2 == 0 {
					duringSet = append(duringSet, sliding[i])
				} else {
					idleSet = append(idleSet, sliding[i])
				}
			}
			// Disjoint sets alone left the runs unequal from the second
			// round on: each set's tokens cached by earlier rounds were
			// evicted, before the run without the flush, by the misses of
			// the run beside it (and the cache held more entries then).
			// So each run starts from a cache that holds only the uses not
			// yet written (the flush's 100,000, before the run beside it;
			// none, before the other), with garbage collected.
			sameCache(db)
			st0, w0 := db.Stats(), procWchar(b)
			stop, done := make(chan struct{}), make(chan struct{})
			var lat []time.Duration
			go func() {
				defer close(done)
				lat = validateLatencies(b, db, duringSet, 0, stop)
			}()
			rec.mu.Lock()
			rec.took = rec.took[:0]
			rec.mu.Unlock()
			b.StartTimer()
			err := f.Flush(ctx)
			b.StopTimer()
			close(stop)
			<-done
			require.NoError(b, err)
			// Validate writes nothing: what was written meanwhile is the
			// flush's.
			st, w1 := db.Stats(), procWchar(b)
			wrote += w1 - w0
			persisted += int64(st.TouchesPersisted - st0.TouchesPersisted)
			rec.mu.Lock()
			flushTx = append(flushTx, rec.took...)
			rec.mu.Unlock()
			// The Validates beside it left uses of their own: write them
			// first, then measure the same number without a flush.
			require.NoError(b, f.Flush(ctx))
			during = append(during, lat...)
			hitsDuring.add(st0, st)
			sameCache(db)
			st0 = db.Stats()
			idle = append(idle, validateLatencies(b, db, idleSet, len(lat), nil)...)
			hitsIdle.add(st0, db.Stats())
			require.NoError(b, f.Flush(ctx))
			b.StartTimer()
		}
		b.StopTimer()
		require.NoError(b, db.Close())
		p99i, p99d := percentile(idle, 0.99), percentile(during, 0.99)
		b.ReportMetric(float64(wrote)/float64(max(persisted, 1)), "bytes-written/use")
		b.ReportMetric(float64(p99i.Nanoseconds()), "p99-idle-ns")
		b.ReportMetric(float64(p99d.Nanoseconds()), "p99-flush-ns")
		b.ReportMetric(float64(p99d)/float64(p99i), "p99-ratio")
		b.ReportMetric(excessSlow(during, p99i)/float64(b.N), "slow-validates/op")
		b.ReportMetric(hitsDuring.percent(), "%hits-flush")
		b.ReportMetric(hitsIdle.percent(), "%hits-idle")
		b.ReportMetric(ms(percentile(flushTx, 1)), "max-tx-ms")
		b.ReportMetric(ms(percentile(flushTx, 0.99)), "p99-tx-ms")
		b.ReportMetric(float64(len(flushTx))/float64(b.N), "tx/op")
	})
	b.Run("100k-of-1M-issue-wait", func(b *testing.B) {
		// How long an Issue waits behind the flush's transactions: Issues
		// one after the other from one goroutine while the Flush of
		// 100,000 uses runs, then as many without it (waitRecorder).
		clk := newManualClock(fx.t0.Add(time.Millisecond))
		db := openBench(b, fx.copyOf(b, "flush-issue-wait"), &tokenstore.Options{SweepInterval: -1, Now: clk.Now})
		f, ok := any(db).(flusher)
		if !ok {
			require.NoError(b, db.Close())
			b.Skip("this build has no DB.Flush")
		}
		var waits waitRecorder
		tokenstore.SetWriteWaitHook(db, waits.add)
		sliding := fx.sliding()
		rng := mrand.New(mrand.NewPCG(4, 5))
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			clk.Advance(30 * time.Second)
			for _, i := range rng.Perm(len(sliding))[:min(100_000, len(sliding)/2)] {
				_, err := db.Validate(ctx, sliding[i])
				require.NoError(b, err)
			}
			_, _, err := issueWait(b, db, &waits, func() error { return f.Flush(ctx) })
			require.NoError(b, err)
			b.StartTimer()
		}
		b.StopTimer()
		require.NoError(b, db.Close())
		waits.report(b, "flush")
	})
}
func (c *manualClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }
