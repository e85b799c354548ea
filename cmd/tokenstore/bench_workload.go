package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tokenstore/tokenstore"
)

// benchClock is the store's clock (Options.Now) during a bench. It is
// either stopped at a time (the preload sets each batch's creation time)
// or running from a time at a speed: 600 makes a second of the run ten
// minutes of the store's time, so a 3-second run sees tokens come back
// after idle spells longer than TouchInterval, as a site does over hours.
type benchClock struct{ st atomic.Pointer[clockState] }

type clockState struct {
	sim   time.Time // the store's time at real
	real  time.Time
	speed float64 // 0: stopped at sim
}

func newBenchClock(t time.Time) *benchClock {
	c := &benchClock{}
	c.set(t)
	return c
}

func (c *benchClock) now() time.Time {
	s := c.st.Load()
	if s.speed == 0 {
		return s.sim
	}
	return s.sim.Add(time.Duration(float64(time.Since(s.real)) * s.speed))
}

// set stops the clock at t.
func (c *benchClock) set(t time.Time) { c.st.Store(&clockState{sim: t}) }

// run starts the clock from where it is, at speed times real time.
func (c *benchClock) run(speed float64) {
	c.st.Store(&clockState{sim: c.now(), real: time.Now(), speed: speed})
}

// tokenTable holds the tokens the runs use, shared by every goroutine, as
// an application's tokens are shared by its request handlers: a goroutine
// that runs for a whole scheduler slice still spreads its checks over all
// the tokens, not over a small pool of its own it would come back to at
// once. Readers load the slice without a lock; appends (Issue) take mu and
// publish a longer slice. Revoked and expired tokens stay as dead slots.
type tokenTable struct {
	mu    sync.Mutex
	slots atomic.Pointer[[]*tokenSlot]
}

// tokenSlot is a token and when the bench last used it, by the store's
// clock (Unix nanoseconds).
type tokenSlot struct {
	tok     string
	lastUse atomic.Int64
	dead    atomic.Bool // revoked, or found expired
}

func newTokenTable(n int) *tokenTable {
	t := &tokenTable{}
	s := make([]*tokenSlot, 0, n)
	t.slots.Store(&s)
	return t
}

func (t *tokenTable) load() []*tokenSlot { return *t.slots.Load() }

func (t *tokenTable) add(tok string, used time.Time) {
	sl := &tokenSlot{tok: tok}
	sl.lastUse.Store(used.UnixNano())
	t.mu.Lock()
	s := append(t.load(), sl) // readers of the shorter slice never see the new element
	t.slots.Store(&s)
	t.mu.Unlock()
}

// use records a use at now and says whether it was a returning one: one
// that comes after or more since the token's latest use.
func (sl *tokenSlot) use(now time.Time, after time.Duration) (returning bool) {
	n := now.UnixNano()
	for {
		old := sl.lastUse.Load()
		returning = n-old >= int64(after)
		if n <= old || sl.lastUse.CompareAndSwap(old, n) {
			return returning
		}
	}
}

// live returns the live tokens.
func (t *tokenTable) live() []string {
	var out []string
	for _, sl := range t.load() {
		if !sl.dead.Load() {
			out = append(out, sl.tok)
		}
	}
	return out
}

// preload issues n tokens in batches into table, in random order. With
// spread > 0 the clock is stopped and the batches are issued at times
// spread evenly over the spread before its time, where it is left: the
// tokens' last uses (their creation) cover the idle window. Otherwise the
// clock is left running.
func preload(ctx context.Context, db *tokenstore.DB, n int, table *tokenTable, clock *benchClock, spread time.Duration, seed uint64, prog progress) (time.Duration, error) {
	chunk := 10_000
	if spread > 0 {
		chunk = 5_000 // 20 creation times per 100,000 tokens
	}
	end := clock.now()
	prog.start(fmt.Sprintf("preloading %s tokens", thousands(float64(n))), int64(n))
	start := time.Now()
	reqs := make([]tokenstore.IssueRequest, 0, chunk)
	type issued struct {
		tok string
		at  time.Time
	}
	all := make([]issued, 0, n)
	for done := 0; done < n; {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		reqs = reqs[:0]
		for i := done; i < n && len(reqs) < chunk; i++ {
			reqs = append(reqs, tokenstore.IssueRequest{Subject: fmt.Sprintf("bench-%08d", i/4)})
		}
		at := end
		if spread > 0 { // the middle of the batch's share of the window
			frac := (float64(done) + float64(len(reqs))/2) / float64(n)
			at = end.Add(-spread + time.Duration(frac*float64(spread)))
			clock.set(at)
		}
		res, err := db.IssueBatch(ctx, reqs)
		if err != nil {
			return 0, err
		}
		for _, is := range res {
			all = append(all, issued{is.Token, at})
		}
		done += len(res)
		prog.set(int64(done))
	}
	if spread > 0 {
		clock.set(end)
	}
	took := time.Since(start)
	// Shuffled, a token's place in the table (its popularity under
	// --traffic zipf) has nothing to do with its age.
	r := rand.New(rand.NewPCG(seed, 0))
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for _, is := range all {
		table.add(is.tok, is.at)
	}
	prog.done(fmt.Sprintf("preloaded %s tokens in %s", thousands(float64(n)), took.Round(time.Millisecond)))
	return took, nil
}

// runSpec is one run of the workload: a name and the store's options.
type runSpec struct {
	name  string // for people: "tokenstore"
	key   string // for benchstat: "tokenstore"
	touch time.Duration
}

// runResult is what a run measured, before it becomes a runReport.
type runResult struct {
	seconds   float64
	hists     [numOps]hist
	rejected  [numOps]uint64
	returning uint64
	stats     [3]tokenstore.Stats // at the start, the end, and after Close
	written   [3]int64            // bytesWritten at the same points; -1 unknown
}

// runStore opens the file with spec's options on clock, runs the mix from
// cfg.concurrency goroutines for cfg.duration and closes the store,
// measuring what Close writes apart.
func runStore(ctx context.Context, path string, table *tokenTable, cfg benchConfig, spec runSpec, clock *benchClock, prog progress) (res runResult, err error) {
	db, err := tokenstore.Open(path, &tokenstore.Options{Policy: cfg.policy.policy(), TouchInterval: spec.touch, Now: clock.now})
	if err != nil {
		return res, err
	}
	defer func() {
		if db != nil {
			err = errors.Join(err, db.Close())
		}
	}()
	threshold := cfg.returningAfter()
	ws := make([]*worker, cfg.concurrency)
	for i := range ws {
		ws[i] = &worker{table: table, traffic: cfg.traffic, returningAfter: threshold, mix: &cfg.mix, clock: clock}
	}
	res.stats[0], res.written[0] = db.Stats(), written()
	prog.start(fmt.Sprintf("running %s, %s", spec.name, cfg.mix.String()), cfg.duration.Milliseconds())
	elapsed, err := runFor(ctx, cfg.duration, prog, len(ws), func(i int, stop *atomic.Bool) error {
		return ws[i].run(ctx, db, uint64(i)+cfg.seed, stop)
	})
	if err != nil {
		return res, err
	}
	res.stats[1], res.written[1] = db.Stats(), written()
	cerr := db.Close()
	res.stats[2], res.written[2] = db.Stats(), written()
	db = nil
	if cerr != nil {
		return res, cerr
	}
	for _, w := range ws {
		for op := range numOps {
			res.hists[op].merge(&w.hist[op])
			res.rejected[op] += w.rejected[op]
		}
		res.returning += w.returning
	}
	res.seconds = elapsed.Seconds()
	prog.done(fmt.Sprintf("ran %s for %s", spec.name, elapsed.Round(time.Millisecond)))
	return res, nil
}

// written is bytesWritten, -1 where it is unknown.
func written() int64 {
	if n, ok := bytesWritten(); ok {
		return n
	}
	return -1
}

// runFor runs fn(i, stop) from n goroutines until d has passed, ctx is
// done or one of them fails, sets stop, and waits for them all.
func runFor(ctx context.Context, d time.Duration, prog progress, n int, fn func(i int, stop *atomic.Bool) error) (time.Duration, error) {
	var stop atomic.Bool
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			if err := fn(i, &stop); err != nil {
				errs <- err
				stop.Store(true)
			}
		})
	}
	tick := time.NewTicker(100 * time.Millisecond)
	deadline := time.NewTimer(d)
wait:
	for {
		select {
		case <-tick.C:
			prog.set(min(time.Since(start), d).Milliseconds())
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			break wait
		case err := <-errs:
			errs <- err
			break wait
		}
	}
	tick.Stop()
	deadline.Stop()
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return elapsed, ctx.Err()
}

// worker is one goroutine of a run.
type worker struct {
	table          *tokenTable
	traffic        trafficModel
	returningAfter time.Duration
	mix            *benchMix
	clock          *benchClock

	hist      [numOps]hist
	rejected  [numOps]uint64
	returning uint64 // validations of a token last used returningAfter or more before
	next      int    // subjects of the tokens it issues

	zipf  *rand.Zipf
	zipfN int
}

// zipfS is the exponent of --traffic zipf: with it, the first 1% of
// 10,000 tokens get about two thirds of the validations.
const zipfS = 1.1

// pick returns a live token of the table for op, nil when it finds none.
func (w *worker) pick(r *rand.Rand, op int) *tokenSlot {
	slots := w.table.load()
	if len(slots) == 0 {
		return nil
	}
	for range 16 { // dead slots are few unless the mix revokes most tokens
		var i int
		if op == opValidate && w.traffic == trafficZipf {
			if w.zipf == nil || w.zipfN != len(slots) {
				w.zipf, w.zipfN = rand.NewZipf(r, zipfS, 1, uint64(len(slots)-1)), len(slots)
			}
			i = int(w.zipf.Uint64())
		} else {
			i = r.IntN(len(slots))
		}
		if sl := slots[i]; !sl.dead.Load() {
			return sl
		}
	}
	return nil
}

func (w *worker) run(ctx context.Context, db *tokenstore.DB, seed uint64, stop *atomic.Bool) error {
	r := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	for !stop.Load() {
		op := w.mix.pick(r)
		var sl *tokenSlot
		if op != opIssue {
			if sl = w.pick(r, op); sl == nil {
				op = opIssue // no live token left to validate or revoke
			}
		}
		var err error
		now := w.clock.now()
		t := time.Now()
		switch op {
		case opValidate:
			if _, err = db.Validate(ctx, sl.tok); errors.Is(err, tokenstore.ErrExpired) || errors.Is(err, tokenstore.ErrNotFound) {
				sl.dead.Store(true) // expired, or revoked by another goroutine
				w.rejected[op]++
				continue
			}
			if err == nil && sl.use(now, w.returningAfter) {
				w.returning++
			}
		case opIssue:
			w.next++
			var tok string
			if tok, _, err = db.Issue(ctx, "bench-new-"+strconv.Itoa(w.next)); err == nil {
				w.table.add(tok, now)
			}
		case opRevoke:
			if !sl.dead.CompareAndSwap(false, true) {
				continue // another goroutine got there first
			}
			if err = db.Revoke(ctx, sl.tok); errors.Is(err, tokenstore.ErrNotFound) {
				w.rejected[op]++
				continue
			}
		}
		d := time.Since(t)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: runFor reports it
			}
			return fmt.Errorf("%s: %w", opNames[op], err)
		}
		w.hist[op].record(d)
	}
	return nil
}

// floorBucket is the bucket tokenstore keeps its records in, keyed by the
// token's Hash (format.Parse): the floor reads it as Validate's cache miss does.
var floorBucket = []byte("tokens")

// runFloor measures the bare bbolt read floor of the file: View+Get of a
// random key among the live tokens' hashes, with no tokenstore code, from
// as many goroutines and for as long as the runs. misses counts the Gets
// that found nothing (a token swept meanwhile); more than a tenth of them
// is an error, since the floor would then be that of reading nothing.
func runFloor(ctx context.Context, path string, table *tokenTable, cfg benchConfig, prog progress) (h hist, misses uint64, seconds float64, err error) {
	format, err := tokenstore.NewFormat("")
	if err != nil {
		return hist{}, 0, 0, err
	}
	var keys [][]byte
	for _, tok := range table.live() {
		if h, err := format.Parse(tok); err == nil {
			keys = append(keys, h[:])
		}
	}
	if len(keys) == 0 {
		return hist{}, 0, 0, errors.New("the floor: no token left to read (every one was revoked or expired)")
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return hist{}, 0, 0, fmt.Errorf("the floor: %w", err)
	}
	defer bdb.Close()
	if err := bdb.View(func(tx *bolt.Tx) error {
		if tx.Bucket(floorBucket) == nil {
			return fmt.Errorf("the floor: the file has no %q bucket", floorBucket)
		}
		return nil
	}); err != nil {
		return hist{}, 0, 0, err
	}
	hs := make([]hist, cfg.concurrency)
	missed := make([]uint64, cfg.concurrency)
	prog.start("running the bbolt read floor", cfg.duration.Milliseconds())
	elapsed, err := runFor(ctx, cfg.duration, prog, cfg.concurrency, func(i int, stop *atomic.Bool) error {
		r := rand.New(rand.NewPCG(uint64(i)+cfg.seed, uint64(time.Now().UnixNano())))
		for !stop.Load() {
			k := keys[r.IntN(len(keys))]
			t := time.Now()
			err := bdb.View(func(tx *bolt.Tx) error {
				if tx.Bucket(floorBucket).Get(k) == nil {
					missed[i]++
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("the floor: %w", err)
			}
			hs[i].record(time.Since(t))
		}
		return nil
	})
	if err != nil {
		return hist{}, 0, 0, err
	}
	for i := range hs {
		h.merge(&hs[i])
		misses += missed[i]
	}
	prog.done(fmt.Sprintf("ran the bbolt read floor for %s", elapsed.Round(time.Millisecond)))
	if misses*10 > h.n {
		// A floor of misses would flatter nothing and mean nothing.
		return h, misses, 0, fmt.Errorf("the floor: %s of %s reads found no record under the token's hash in the %q bucket: has the file's layout changed?",
			thousands(float64(misses)), thousands(float64(h.n)), floorBucket)
	}
	return h, misses, elapsed.Seconds(), nil
}
