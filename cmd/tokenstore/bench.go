package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

// benchConfig is what the bench command's flags set.
type benchConfig struct {
	tokens      int           // preloaded tokens
	duration    time.Duration // of each run
	concurrency int           // goroutines
	mix         benchMix
	policy      policyFlag
	traffic     trafficModel
	speed       float64       // the store's clock over real time, for simulated traffic; 0: clockSpeed decides
	touch       time.Duration // Options.TouchInterval of the tokenstore run; 0: the library's default
	db          string        // an existing token file to copy and run on; "" for a fresh one
	json        bool
	benchstat   bool // also print "go test -bench" lines
	baseline    bool // also run with a write on every check
	seed        uint64
}

// defaultTouchInterval is the library's default Options.TouchInterval (its
// doc: "Zero: 1 minute"): what an application that sets nothing gets, and
// the idle spell after which a validation counts as a returning use.
const defaultTouchInterval = time.Minute

func defaultBenchConfig() benchConfig {
	return benchConfig{
		tokens:      100_000,
		duration:    3 * time.Second,
		concurrency: 64,
		mix:         benchMix{opValidate: 90, opIssue: 5, opRevoke: 5},
		traffic:     trafficReturning,
		baseline:    true,
		seed:        1,
	}
}

// maxSpeed is the default --speed: a second of the run is an hour of the
// store's time, so a token checked again a second later (100,000 tokens
// at 100,000 checks/s) comes back after an hour, far past TouchInterval.
const maxSpeed = 3600

// clockSpeed is how many times faster than real time the store's clock
// runs in a run of simulated traffic: --speed, or maxSpeed unless a run
// would then span more than a tenth of the policy's window (a short idle
// time, say sliding(idle=1h)), where it is slower so that tokens do not
// expire by the thousand during the run.
func (c *benchConfig) clockSpeed() float64 {
	if !c.traffic.simulated() {
		return 1
	}
	if c.speed > 0 {
		return c.speed
	}
	return c.clockSpeedDefault()
}

// clockSpeedDefault is the speed clockSpeed picks when --speed is not given.
func (c *benchConfig) clockSpeedDefault() float64 {
	window := c.policy.policy().TTL()
	return max(1, min(maxSpeed, float64(window)/(10*float64(c.duration))))
}

// maxBenchConcurrency is the most --concurrency accepted: far more
// requests in flight than one process serves, at about 200 MiB of
// histograms.
const maxBenchConcurrency = 4096

// minBenchDuration is the shortest --duration accepted: a shorter run
// (1ns) finishes no call, and its report would have nothing to judge.
const minBenchDuration = 10 * time.Millisecond

// check refuses the flag combinations whose report could not say what
// the command is for: a run too short to finish a call, and a --speed at
// which the store's clock passes the policy's whole window during one run,
// so that the tokens expire and the checks measured are rejections (--speed
// 1e9 for 1 s: 2 of 11,411 checks found a live token, and the verdict
// judged those two).
func (c *benchConfig) check() error {
	if c.concurrency > maxBenchConcurrency {
		return fmt.Errorf("--concurrency %d is too many: give at most %d (each goroutine keeps its own latency histograms, 48 KiB; 200,000 took 11 GiB)", c.concurrency, maxBenchConcurrency)
	}
	if c.duration < minBenchDuration {
		return fmt.Errorf("--duration %s is too short to measure: give at least %s", formatDuration(c.duration), formatDuration(minBenchDuration))
	}
	if c.speed > 0 && c.traffic.simulated() {
		window := c.policy.policy().TTL()
		if span := c.speed * float64(c.duration); span > float64(window) {
			return fmt.Errorf("--speed %g runs the store's clock through %.0f× the policy's %s window in each %s run, so the tokens would expire during it: give --speed %.0f or less (by default the command picks %.0f)",
				c.speed, span/float64(window), formatDuration(window), formatDuration(c.duration),
				float64(window)/float64(c.duration), c.clockSpeedDefault())
		}
	}
	return nil
}

// returningAfter is the idle spell after which a validation is a
// returning use: the tokenstore run's TouchInterval.
func (c *benchConfig) returningAfter() time.Duration {
	if c.touch > 0 {
		return c.touch
	}
	return defaultTouchInterval
}

// touchName says what the tokenstore run's TouchInterval is.
func (c *benchConfig) touchName() string {
	switch {
	case c.touch == 0:
		return formatDuration(defaultTouchInterval) + " (the default)"
	case c.touch < 0:
		return "every use (negative)"
	}
	return formatDuration(c.touch)
}

func newBenchCmd(a *app) *cobra.Command {
	cfg := defaultBenchConfig()
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure how fast the store checks tokens on this machine",
		Long: `bench measures tokenstore on this machine and disk, and compares it with
two yardsticks measured in the same run:

  tokenstore                          the store with the default Options, as
                                      an application gets it
  a store that writes on every check  the same store with TouchInterval < 0:
                                      the design tokenstore replaces (a
                                      database row updated on each request)
  the bbolt read floor                bbolt alone: View+Get of a random
                                      token's key in the same file

It preloads --tokens tokens into a temporary file, then runs --concurrency
goroutines that validate, issue and revoke in the proportions of --mix for
--duration, once per store, then reads the file with bbolt alone. It prints
what each figure means and a verdict.

--traffic says which tokens are checked:
  returning  (default) each token's last use lies somewhere in the policy's
             idle window, and the store's clock (Options.Now) runs --speed
             times faster than real time (3600: a second is an hour), so
             most checks are a user's first after an idle spell longer than
             TouchInterval: the traffic of a real site, where the store may
             have to write the use
  zipf       the same, with a few popular tokens getting most checks
  hot        every token issued just before the run, on the real clock,
             checked in a tight loop: the cached path, the best case

With --db, it runs on a copy of an existing token file, made beside it (so
on its disk, at its size); the file itself is only read. The temporary
file never outlives the command: on Linux it has no name from the moment
it is made; elsewhere it is removed on exit, Ctrl-C, SIGTERM, SIGHUP and a
closed pipe.

--benchstat adds the results as "go test -bench" lines, for benchstat:
    tokenstore bench --benchstat > old.txt; ...; tokenstore bench --benchstat > new.txt
    benchstat old.txt new.txt

With no flags it takes about 12 seconds: 100,000 tokens, 3 s per run.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.check(); err != nil {
				return &usageError{err}
			}
			return runBench(cmd.Context(), cfg, a.stdout, a.stderr)
		},
	}
	f := cmd.Flags()
	f.Var((*positiveInt)(&cfg.tokens), "tokens", "tokens to preload")
	f.Var((*positiveDuration)(&cfg.duration), "duration", "how long each run lasts")
	f.Var((*positiveInt)(&cfg.concurrency), "concurrency", "goroutines calling the store")
	f.Var(&cfg.mix, "mix", "operations in proportion: validate=N,issue=N,revoke=N")
	f.Var(&cfg.traffic, "traffic", "which tokens are checked: returning, zipf or hot")
	f.Var((*positiveFloat)(&cfg.speed), "speed", "how many times faster than real time the store's clock runs under returning and zipf traffic (default 3600, less for a short policy)")
	f.Var(&cfg.policy, "policy", `expiry policy of the tokens: sliding, absolute, or e.g. "sliding(idle=14d, max=30d)", "absolute(24h)"`)
	f.Var((*durationValue)(&cfg.touch), "touch-interval", "Options.TouchInterval of the tokenstore run (default: the library's, 1m)")
	f.StringVar(&cfg.db, "db", "", "run on a copy of this existing token `file` instead of a fresh one")
	f.BoolVar(&cfg.json, "json", false, "print the results as JSON (benchstat lines included)")
	f.BoolVar(&cfg.benchstat, "benchstat", false, `also print the results as "go test -bench" lines, for benchstat`)
	f.BoolVar(&cfg.baseline, "baseline", true, "also run a store that writes on every check, for the comparison")
	return cmd
}

// runBench runs the benchmark that cfg describes and prints its report to
// stdout; progress goes to stderr. It removes the file it made before it
// prints anything, and on every way out; on a signal of benchSignals it
// stops early with an error that names it.
func runBench(ctx context.Context, cfg benchConfig, stdout, stderr io.Writer) (err error) {
	ctx, stopSignals := onSignals(ctx, benchSignals...)
	defer stopSignals()
	defer func() {
		var stopped errStopped
		if err != nil && errors.As(context.Cause(ctx), &stopped) {
			err = stopped // not "context canceled": the signal is the cause
		}
	}()

	rep, err := measure(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.json {
		return writeJSON(stdout, rep)
	}
	return writeBenchText(stdout, rep, cfg.benchstat)
}

// measure runs the preload and the runs on a temporary file, removed
// before it returns, and returns the report.
func measure(ctx context.Context, cfg benchConfig, stderr io.Writer) (rep *benchReport, err error) {
	prog := newProgress(stderr)
	path, remove, err := benchFile(ctx, cfg.db)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, remove()) }()

	rep = newBenchReport(&cfg)
	clock := newBenchClock(time.Now())
	var spread time.Duration
	if cfg.traffic.simulated() {
		spread = cfg.policy.policy().TTL()
	} else {
		clock.run(1) // the real clock
	}
	table := newTokenTable(cfg.tokens)
	err = withStore(path, tokenstore.Options{Policy: cfg.policy.policy(), Now: clock.now, SweepInterval: -1}, func(db *tokenstore.DB) error {
		took, err := preload(ctx, db, cfg.tokens, table, clock, spread, cfg.seed, prog)
		rep.Preload = preloadReport{Tokens: cfg.tokens, Seconds: took.Seconds(), PerSecond: float64(cfg.tokens) / took.Seconds()}
		return err
	})
	if err != nil {
		return nil, err
	}
	if cfg.traffic.simulated() {
		clock.run(cfg.clockSpeed())
	}
	// Each run opens the file afresh, as an application does after a
	// restart: its cache starts empty.
	specs := []runSpec{{name: runTokenstore, key: "tokenstore", touch: cfg.touch}}
	if cfg.baseline {
		specs = append(specs, runSpec{name: runEveryCheck, key: "write-every-check", touch: -1})
	}
	for _, spec := range specs {
		res, err := runStore(ctx, path, table, cfg, spec, clock, prog)
		if err != nil {
			return nil, err
		}
		rep.addRun(&cfg, spec, &res)
	}
	floor, misses, secs, err := runFloor(ctx, path, table, cfg, prog)
	if err != nil {
		return nil, err
	}
	rep.Floor = newOpReport("read", &floor, misses, secs)
	if st, err := os.Stat(path); err == nil {
		rep.FileBytes = st.Size()
	}
	err = withStore(path, tokenstore.Options{ReadOnly: true}, func(db *tokenstore.DB) error {
		rep.TokensInFile = db.Stats().Tokens
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.finish()
	return rep, nil
}

// withStore opens the store at path, calls fn with it and closes it.
func withStore(path string, opts tokenstore.Options, fn func(*tokenstore.DB) error) error {
	db, err := tokenstore.Open(path, &opts)
	if err != nil {
		return err
	}
	return errors.Join(fn(db), db.Close())
}
