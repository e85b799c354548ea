package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tokenstore/tokenstore"
)

// benchConfig is what the bench command's flags set.
type benchConfig struct {
	tokens      int           // preloaded tokens
	duration    time.Duration // of each run
	concurrency int           // goroutines
	mix         benchMix
	policy      policyFlag
	touch       time.Duration // Options.TouchInterval of the first run
	db          string        // an existing token file to copy and run on; "" for a fresh one
	json        bool
	baseline    bool // also run with a write per validation
}

func defaultBenchConfig() benchConfig {
	return benchConfig{
		tokens:      100_000,
		duration:    3 * time.Second,
		concurrency: 64,
		mix:         benchMix{opValidate: 90, opIssue: 5, opRevoke: 5},
		policy:      policyFlag{name: "sliding"},
		touch:       time.Minute,
		baseline:    true,
	}
}

func newBenchCmd(a *app) *cobra.Command {
	cfg := defaultBenchConfig()
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the store on this machine under a mix of validate, issue and revoke",
		Long: `bench measures tokenstore on this machine and disk: it preloads --tokens
tokens into a fresh temporary file (IssueBatch), runs --concurrency
goroutines that validate, issue and revoke in the proportions of --mix for
--duration, then runs the same workload again with a write per validation
(TouchInterval < 0), the design tokenstore replaces. It prints throughput
and latency percentiles of each operation, the file size, the peak memory,
and the ratio of the two runs' validations, followed by the same results as
"go test -bench" lines, which benchstat reads:

    tokenstore bench > old.txt; ...; tokenstore bench > new.txt
    benchstat old.txt new.txt

With --db, it runs on a copy of an existing token file, made beside it (so
on its disk, at its size) and removed afterwards; the file itself is only
read. The temporary file is removed on every exit, Ctrl-C included.

With no flags it takes about 10 seconds: 100,000 tokens, 3 s per run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd.Context(), cfg, a.stdout, a.stderr)
		},
	}
	f := cmd.Flags()
	f.Var((*positiveInt)(&cfg.tokens), "tokens", "tokens to preload")
	f.Var((*positiveDuration)(&cfg.duration), "duration", "how long each run lasts")
	f.Var((*positiveInt)(&cfg.concurrency), "concurrency", "goroutines calling the store")
	f.Var(&cfg.mix, "mix", "operations in proportion: validate=N,issue=N,revoke=N")
	f.Var(&cfg.policy, "policy", `expiry policy of the tokens: sliding, absolute, or "sliding(idle=1h, max=720h)", "absolute(24h)"`)
	f.DurationVar(&cfg.touch, "touch-interval", cfg.touch, "Options.TouchInterval of the first run (negative: a write per validation)")
	f.StringVar(&cfg.db, "db", "", "run on a copy of this existing token `file` instead of a fresh one")
	f.BoolVar(&cfg.json, "json", false, "print the results as JSON")
	f.BoolVar(&cfg.baseline, "baseline", true, "also run the workload with a write per validation, for the ratio")
	return cmd
}

// positiveInt is an int flag that refuses zero and negative values.
type positiveInt int

func (p *positiveInt) String() string { return strconv.Itoa(int(*p)) }
func (p *positiveInt) Type() string   { return "int" }
func (p *positiveInt) Set(s string) error {
	n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a positive whole number", s)
	}
	*p = positiveInt(n)
	return nil
}

// positiveDuration is a duration flag that refuses zero and negative values.
type positiveDuration time.Duration

func (p *positiveDuration) String() string { return time.Duration(*p).String() }
func (p *positiveDuration) Type() string   { return "duration" }
func (p *positiveDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive duration (e.g. 10s, 1m)", s)
	}
	*p = positiveDuration(d)
	return nil
}

// Operations of the mix.
const (
	opValidate = iota
	opIssue
	opRevoke
	numOps
)

var opNames = [numOps]string{"validate", "issue", "revoke"}

// benchMix is the relative weight of each operation.
type benchMix [numOps]int

func (m *benchMix) Type() string { return "mix" }

func (m *benchMix) String() string {
	parts := make([]string, numOps)
	for op, name := range opNames {
		parts[op] = fmt.Sprintf("%s=%d", name, m[op])
	}
	return strings.Join(parts, ",")
}

// Set parses "validate=90,issue=5,revoke=5": weights, not necessarily
// summing to 100; an operation left out gets 0.
func (m *benchMix) Set(s string) error {
	var out benchMix
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.TrimSpace(name)
		op := slices.Index(opNames[:], name)
		if !ok || op < 0 {
			return fmt.Errorf("%q: want validate=N,issue=N,revoke=N", part)
		}
		if seen[name] {
			return fmt.Errorf("%s is given twice", name)
		}
		seen[name] = true
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || n < 0 {
			return fmt.Errorf("%s=%s: want a whole number, 0 or more", name, val)
		}
		out[op] = n
	}
	if out[opValidate]+out[opIssue]+out[opRevoke] == 0 {
		return errors.New("every weight is 0")
	}
	*m = out
	return nil
}

// pick returns an operation drawn by weight.
func (m *benchMix) pick(r *rand.Rand) int {
	n := r.IntN(m[opValidate] + m[opIssue] + m[opRevoke])
	for op := range numOps {
		if n < m[op] {
			return op
		}
		n -= m[op]
	}
	return opValidate
}

// policyFlag is the --policy flag: "sliding" and "absolute" are the
// library's defaults (Sliding(14 days, 30 days), Absolute(30 days)), or a
// policy as tokenstore.ParsePolicy reads it.
type policyFlag struct {
	name string
	p    tokenstore.Policy
}

func (p *policyFlag) Type() string   { return "policy" }
func (p *policyFlag) String() string { return p.name }
func (p *policyFlag) Set(s string) error {
	switch s {
	case "sliding":
		*p = policyFlag{name: s}
	case "absolute":
		*p = policyFlag{name: s, p: tokenstore.Absolute(30 * 24 * time.Hour)}
	default:
		pol, err := tokenstore.ParsePolicy(s)
		if err != nil {
			return fmt.Errorf("%q: want sliding, absolute, or a policy such as \"sliding(idle=1h, max=720h)\"", s)
		}
		*p = policyFlag{name: pol.String(), p: pol}
	}
	return nil
}

// describe names the policy the tokens get.
func (p policyFlag) describe() string {
	if p.p.IsZero() {
		return "sliding(idle=336h0m0s, max=720h0m0s)" // the library's default
	}
	return p.p.String()
}

// hist is a latency histogram with 32 buckets per power of two (about 3%
// resolution), an exact count and an exact maximum. The zero value is
// empty; it is not safe for concurrent use (each goroutine keeps its own
// and merge adds them up).
type hist struct {
	counts [2048]uint64
	n      uint64
	max    int64
}

const histSub = 5 // 1<<histSub buckets per power of two

func histBucket(v uint64) int {
	if v < 2<<histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSub - 1
	return e<<histSub + int(v>>e)
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < 2<<histSub {
		return int64(i)
	}
	e := i>>histSub - 1
	m := int64(i - e<<histSub)
	return m<<e + (int64(1)<<e)/2
}

func (h *hist) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[histBucket(uint64(v))]++
	h.n++
	h.max = max(h.max, v)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the latency below which a fraction q of the samples
// fall (q=1 is the maximum).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(q * float64(h.n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			return time.Duration(min(histValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}

// benchReport is the bench command's result; --json prints it.
type benchReport struct {
	GOOS          string         `json:"goos"`
	GOARCH        string         `json:"goarch"`
	CPU           string         `json:"cpu,omitempty"`
	GOMAXPROCS    int            `json:"gomaxprocs"`
	GoVersion     string         `json:"go_version"`
	Tokens        int            `json:"tokens"`
	Policy        string         `json:"policy"`
	Concurrency   int            `json:"concurrency"`
	Mix           map[string]int `json:"mix"`
	DurationSec   float64        `json:"duration_seconds"`
	CopyOf        string         `json:"copy_of,omitempty"`
	Preload       preloadReport  `json:"preload"`
	Runs          []runReport    `json:"runs"`
	ValidateRatio float64        `json:"validate_ratio,omitempty"` // first run's validations/s over the baseline's
	FileBytes     int64          `json:"file_bytes"`
	TokensInFile  int64          `json:"tokens_in_file"`
	BytesPerToken float64        `json:"bytes_per_token"`
	PeakRSSBytes  int64          `json:"peak_rss_bytes"`
}

type preloadReport struct {
	Tokens    int     `json:"tokens"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
}

type runReport struct {
	Name          string     `json:"name"`
	TouchInterval string     `json:"touch_interval"`
	Seconds       float64    `json:"seconds"`
	Ops           []opReport `json:"ops"`
	CacheHitPct   float64    `json:"cache_hit_percent"`
	UseWrites     uint64     `json:"use_write_transactions"`
}

type opReport struct {
	Op        string  `json:"op"`
	Count     uint64  `json:"count"`
	Rejected  uint64  `json:"rejected,omitempty"` // expired or not found
	PerSecond float64 `json:"per_second"`
	P50       int64   `json:"p50_ns"`
	P90       int64   `json:"p90_ns"`
	P99       int64   `json:"p99_ns"`
	P999      int64   `json:"p999_ns"`
	Max       int64   `json:"max_ns"`
}

func (r *runReport) op(name string) *opReport {
	for i := range r.Ops {
		if r.Ops[i].Op == name {
			return &r.Ops[i]
		}
	}
	return nil
}

// runBench runs the benchmark that cfg describes and prints its report to
// stdout; progress goes to stderr. It removes every file it made, whatever
// happens, and stops early, with ctx's error, when ctx is done.
func runBench(ctx context.Context, cfg benchConfig, stdout, stderr io.Writer) (err error) {
	prog := newProgress(stderr)
	path, cleanup, err := benchFile(ctx, cfg.db)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cleanup()) }()

	rep := benchReport{
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPU: cpuModel(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
		Tokens: cfg.tokens, Policy: cfg.policy.describe(), Concurrency: cfg.concurrency,
		Mix:         map[string]int{"validate": cfg.mix[opValidate], "issue": cfg.mix[opIssue], "revoke": cfg.mix[opRevoke]},
		DurationSec: cfg.duration.Seconds(), CopyOf: cfg.db,
	}
	var pools [][]string
	opts := tokenstore.Options{Policy: cfg.policy.p, TouchInterval: cfg.touch}
	name := "touch=" + cfg.touch.String()
	if cfg.touch < 0 {
		name = "touch=every-use"
	}
	err = withStore(path, opts, func(db *tokenstore.DB) error {
		var took time.Duration
		if pools, took, err = preload(ctx, db, cfg.tokens, cfg.concurrency, prog); err != nil {
			return err
		}
		rep.Preload = preloadReport{Tokens: cfg.tokens, Seconds: took.Seconds(), PerSecond: float64(cfg.tokens) / took.Seconds()}
		run, err := runWorkload(ctx, db, pools, cfg, name, prog)
		run.TouchInterval = cfg.touch.String()
		rep.Runs = append(rep.Runs, run)
		rep.TokensInFile = db.Stats().Tokens
		return err
	})
	if err != nil {
		return err
	}
	if cfg.baseline {
		opts.TouchInterval = -1
		err = withStore(path, opts, func(db *tokenstore.DB) error {
			run, err := runWorkload(ctx, db, pools, cfg, "touch=every-use", prog)
			run.TouchInterval = "every use (TouchInterval < 0)"
			rep.Runs = append(rep.Runs, run)
			rep.TokensInFile = db.Stats().Tokens
			return err
		})
		if err != nil {
			return err
		}
		if b := rep.Runs[1].op("validate"); b != nil && b.PerSecond > 0 {
			rep.ValidateRatio = rep.Runs[0].op("validate").PerSecond / b.PerSecond
		}
	}
	if st, err := os.Stat(path); err == nil {
		rep.FileBytes = st.Size()
		rep.BytesPerToken = float64(st.Size()) / float64(max(rep.TokensInFile, 1))
	}
	rep.PeakRSSBytes = peakRSS()

	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return writeBenchText(stdout, &rep)
}

// withStore opens the store at path, calls fn with it and closes it.
func withStore(path string, opts tokenstore.Options, fn func(*tokenstore.DB) error) error {
	db, err := tokenstore.Open(path, &opts)
	if err != nil {
		return err
	}
	return errors.Join(fn(db), db.Close())
}

// benchFile returns the file to run on and how to remove it: a fresh one
// in a new temporary directory, or a copy of the existing token file
// existing, beside it.
func benchFile(ctx context.Context, existing string) (path string, cleanup func() error, err error) {
	if existing == "" {
		dir, err := os.MkdirTemp("", "tokenstore-bench-")
		if err != nil {
			return "", nil, err
		}
		return filepath.Join(dir, "bench.db"), func() error { return os.RemoveAll(dir) }, nil
	}
	if _, err := os.Stat(existing); err != nil {
		return "", nil, fmt.Errorf("--db: %w", err)
	}
	// A read-only store: bbolt's shared lock keeps writers out while the
	// copy is taken, and Backup reads one consistent transaction.
	src, err := tokenstore.Open(existing, &tokenstore.Options{ReadOnly: true})
	if err != nil {
		return "", nil, fmt.Errorf("--db: %w", err)
	}
	defer src.Close()
	f, err := os.CreateTemp(filepath.Dir(existing), filepath.Base(existing)+".bench-*")
	if err != nil {
		return "", nil, fmt.Errorf("--db: copying it: %w", err)
	}
	remove := func() error {
		if err := os.Remove(f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	_, err = src.Backup(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", nil, errors.Join(fmt.Errorf("--db: copying it: %w", err), remove())
	}
	return f.Name(), remove, nil
}

// preload issues n tokens in bulk and deals them out to workers pools, one
// per goroutine of the runs, so that the goroutines share no tokens.
func preload(ctx context.Context, db *tokenstore.DB, n, workers int, prog progress) ([][]string, time.Duration, error) {
	const chunk = 10_000
	pools := make([][]string, workers)
	prog.start(fmt.Sprintf("preloading %s tokens", thousands(float64(n))), int64(n))
	start := time.Now()
	reqs := make([]tokenstore.IssueRequest, 0, chunk)
	for done := 0; done < n; {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		reqs = reqs[:0]
		for i := done; i < n && len(reqs) < chunk; i++ {
			reqs = append(reqs, tokenstore.IssueRequest{Subject: fmt.Sprintf("bench-%08d", i/4)})
		}
		issued, err := db.IssueBatch(ctx, reqs)
		if err != nil {
			return nil, 0, err
		}
		for i, is := range issued {
			w := (done + i) % workers
			pools[w] = append(pools[w], is.Token)
		}
		done += len(issued)
		prog.set(int64(done))
	}
	took := time.Since(start)
	prog.done(fmt.Sprintf("preloaded %s tokens in %s", thousands(float64(n)), took.Round(time.Millisecond)))
	return pools, took, nil
}

// worker is one goroutine's share of a run.
type worker struct {
	pool     []string // tokens only this goroutine validates and revokes
	hist     [numOps]hist
	rejected [numOps]uint64
	next     int // subjects of the tokens it issues
}

// runWorkload runs the mix from cfg.concurrency goroutines for
// cfg.duration. The goroutines keep their pools between runs.
func runWorkload(ctx context.Context, db *tokenstore.DB, pools [][]string, cfg benchConfig, name string, prog progress) (runReport, error) {
	var stop atomic.Bool
	ws := make([]*worker, len(pools))
	errs := make(chan error, len(pools))
	var wg sync.WaitGroup
	st0 := db.Stats()
	prog.start(fmt.Sprintf("running %s, %s", name, cfg.mix.String()), cfg.duration.Milliseconds())
	start := time.Now()
	for i := range pools {
		ws[i] = &worker{pool: pools[i]}
		w := ws[i]
		seed := uint64(i)
		wg.Go(func() {
			if err := w.run(ctx, db, &cfg.mix, seed, &stop); err != nil {
				errs <- err
				stop.Store(true)
			}
		})
	}
	tick := time.NewTicker(100 * time.Millisecond)
	deadline := time.NewTimer(cfg.duration)
wait:
	for {
		select {
		case <-tick.C:
			prog.set(min(time.Since(start), cfg.duration).Milliseconds())
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
		return runReport{}, err
	}
	if err := ctx.Err(); err != nil {
		return runReport{}, err
	}
	for i, w := range ws {
		pools[i] = w.pool
	}
	st := db.Stats()
	prog.done(fmt.Sprintf("ran %s for %s", name, elapsed.Round(time.Millisecond)))

	rep := runReport{Name: name, Seconds: elapsed.Seconds(), UseWrites: st.TouchWrites - st0.TouchWrites}
	if lookups := (st.CacheHits - st0.CacheHits) + (st.CacheMisses - st0.CacheMisses); lookups > 0 {
		rep.CacheHitPct = 100 * float64(st.CacheHits-st0.CacheHits) / float64(lookups)
	}
	for op := range numOps {
		var h hist
		var rejected uint64
		for _, w := range ws {
			h.merge(&w.hist[op])
			rejected += w.rejected[op]
		}
		if h.n == 0 && cfg.mix[op] == 0 {
			continue
		}
		rep.Ops = append(rep.Ops, opReport{
			Op: opNames[op], Count: h.n, Rejected: rejected, PerSecond: float64(h.n) / elapsed.Seconds(),
			P50: int64(h.quantile(0.5)), P90: int64(h.quantile(0.9)), P99: int64(h.quantile(0.99)),
			P999: int64(h.quantile(0.999)), Max: int64(h.quantile(1)),
		})
	}
	return rep, nil
}

func (w *worker) run(ctx context.Context, db *tokenstore.DB, mix *benchMix, seed uint64, stop *atomic.Bool) error {
	r := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	for !stop.Load() {
		op := mix.pick(r)
		if len(w.pool) == 0 {
			op = opIssue
		}
		var err error
		t := time.Now()
		switch op {
		case opValidate:
			i := r.IntN(len(w.pool))
			if _, err = db.Validate(ctx, w.pool[i]); errors.Is(err, tokenstore.ErrExpired) || errors.Is(err, tokenstore.ErrNotFound) {
				w.drop(i)
				w.rejected[op]++
				continue
			}
		case opIssue:
			w.next++
			var tok string
			if tok, _, err = db.Issue(ctx, "bench-new-"+strconv.Itoa(w.next)); err == nil {
				w.pool = append(w.pool, tok)
			}
		case opRevoke:
			i := r.IntN(len(w.pool))
			tok := w.pool[i]
			w.drop(i)
			if err = db.Revoke(ctx, tok); errors.Is(err, tokenstore.ErrNotFound) {
				w.rejected[op]++
				continue
			}
		}
		d := time.Since(t)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: runWorkload reports it
			}
			return fmt.Errorf("%s: %w", opNames[op], err)
		}
		w.hist[op].record(d)
	}
	return nil
}

func (w *worker) drop(i int) {
	last := len(w.pool) - 1
	w.pool[i] = w.pool[last]
	w.pool = w.pool[:last]
}

// writeBenchText prints the report for people, then as "go test -bench"
// lines for benchstat.
func writeBenchText(w io.Writer, r *benchReport) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "tokenstore bench: %s tokens, %s, %d goroutines, mix %s, %s per run\n",
		thousands(float64(r.Tokens)), r.Policy, r.Concurrency, mixString(r.Mix), time.Duration(r.DurationSec*float64(time.Second)))
	if r.CopyOf != "" {
		fmt.Fprintf(bw, "on a copy of %s\n", r.CopyOf)
	}
	fmt.Fprintf(bw, "preload: %s tokens in %s (%s tokens/s, IssueBatch)\n\n",
		thousands(float64(r.Preload.Tokens)), fmtSeconds(r.Preload.Seconds), thousands(r.Preload.PerSecond))
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, run := range r.Runs {
		fmt.Fprintf(tw, "%s\tops/s\tp50\tp90\tp99\tp99.9\tmax\t\n", "uses written: "+run.TouchInterval)
		for _, o := range run.Ops {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", o.Op, thousands(o.PerSecond),
				fmtNs(o.P50), fmtNs(o.P90), fmtNs(o.P99), fmtNs(o.P999), fmtNs(o.Max))
		}
		fmt.Fprintf(tw, "\t\t\t\t\t\t\t\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, run := range r.Runs {
		fmt.Fprintf(bw, "%s: cache hits %.1f%% of validations and lookups; %s write transactions for uses\n",
			run.Name, run.CacheHitPct, thousands(float64(run.UseWrites)))
	}
	if r.ValidateRatio > 0 {
		fmt.Fprintf(bw, "validations: %.0fx the throughput of a write per validation\n", r.ValidateRatio)
	}
	fmt.Fprintf(bw, "file: %s, %s tokens, %.0f bytes/token; peak memory (RSS): %s\n\n",
		fmtBytes(r.FileBytes), thousands(float64(r.TokensInFile)), r.BytesPerToken, fmtBytes(r.PeakRSSBytes))

	// The same, for benchstat. ns/op is the run's wall time per operation
	// of that kind, as b.RunParallel reports it.
	fmt.Fprintf(bw, "goos: %s\ngoarch: %s\n", r.GOOS, r.GOARCH)
	if r.CPU != "" {
		fmt.Fprintf(bw, "cpu: %s\n", r.CPU)
	}
	fmt.Fprintf(bw, "pkg: tokenstore/cmd/tokenstore\ntokens: %d\npolicy: %s\nconcurrency: %d\nmix: %s\n",
		r.Tokens, r.Policy, r.Concurrency, mixString(r.Mix))
	for _, run := range r.Runs {
		for _, o := range run.Ops {
			if o.Count == 0 {
				continue
			}
			fmt.Fprintf(bw, "BenchmarkBench/%s/op=%s-%d\t%d\t%.1f ns/op\t%.0f ops/s\t%d p50-ns\t%d p90-ns\t%d p99-ns\t%d p99.9-ns\t%d max-ns\n",
				run.Name, o.Op, r.GOMAXPROCS, o.Count, 1e9/o.PerSecond, o.PerSecond, o.P50, o.P90, o.P99, o.P999, o.Max)
		}
	}
	return bw.Flush()
}

func mixString(m map[string]int) string {
	parts := make([]string, 0, numOps)
	for _, name := range opNames {
		parts = append(parts, fmt.Sprintf("%s=%d", name, m[name]))
	}
	return strings.Join(parts, ",")
}

// thousands renders x rounded, with commas: 1,234,567.
func thousands(x float64) string {
	s := strconv.FormatInt(int64(x+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtNs renders a latency with three significant digits: 812ns, 1.23µs.
func fmtNs(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", ns)
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(ns)/1e3, 'g', 3, 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(ns)/1e6, 'g', 3, 64) + "ms"
	}
	return strconv.FormatFloat(float64(ns)/1e9, 'g', 3, 64) + "s"
}

func fmtSeconds(s float64) string { return fmtNs(int64(s * 1e9)) }

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// cpuModel is the CPU's name where the system says it, as go test prints
// it; "" elsewhere.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// peakRSS is the process's peak resident memory, from /proc/self/status
// where there is one, else what the Go runtime obtained from the system.
func peakRSS() int64 {
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.Sys)
}

// progress shows what the bench is doing: a bar when stderr is a
// terminal, a line at the start and end of each step otherwise.
type progress interface {
	start(what string, total int64)
	set(n int64)
	done(summary string)
}

func newProgress(w io.Writer) progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barProgress{w: w}
	}
	return &lineProgress{w: w}
}

type lineProgress struct{ w io.Writer }

func (p *lineProgress) start(what string, _ int64) { fmt.Fprintf(p.w, "%s...\n", what) }
func (p *lineProgress) set(int64)                  {}
func (p *lineProgress) done(summary string)        { fmt.Fprintln(p.w, summary) }

type barProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func (p *barProgress) start(what string, total int64) {
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func (p *barProgress) set(n int64) { _ = p.bar.Set64(n) }

func (p *barProgress) done(summary string) {
	_ = p.bar.Finish()
	fmt.Fprintln(p.w, summary)
}
