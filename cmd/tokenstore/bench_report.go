package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// The runs, named for what they are.
const (
	runTokenstore = "tokenstore"
	runEveryCheck = "a store that writes on every check"
)

// benchReport is the bench command's result; --json prints it. Latencies
// are in nanoseconds (_ns), policies and durations as the rest of the
// command prints them.
type benchReport struct {
	Machine        machineReport  `json:"machine"`
	Tokens         int            `json:"tokens"`
	Policy         string         `json:"policy"`
	Traffic        string         `json:"traffic"`
	ClockSpeed     float64        `json:"clock_speed"`     // the store's clock over real time
	ReturningAfter string         `json:"returning_after"` // the idle spell that makes a returning use
	Concurrency    int            `json:"concurrency"`
	Mix            map[string]int `json:"mix"`
	DurationSec    float64        `json:"duration_seconds"` // of each run
	CopyOf         string         `json:"copy_of,omitempty"`
	Preload        preloadReport  `json:"preload"`
	Runs           []runReport    `json:"runs"`
	Floor          opReport       `json:"floor"` // the bare bbolt read floor

	// Validations per second of the tokenstore run over the floor's reads
	// per second, and over the validations of the store that writes on
	// every check (0 without that run).
	ValidateVsFloor      float64  `json:"validate_vs_floor"`
	ValidateVsEveryCheck float64  `json:"validate_vs_every_check,omitempty"`
	Verdict              []string `json:"verdict"`

	FileBytes     int64   `json:"file_bytes"`
	TokensInFile  int64   `json:"tokens_in_file"`
	BytesPerToken float64 `json:"bytes_per_token"`
	PeakRSSBytes  int64   `json:"peak_rss_bytes"`

	Benchstat []string `json:"benchstat"` // the results as "go test -bench" lines
}

type preloadReport struct {
	Tokens    int     `json:"tokens"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
}

type runReport struct {
	Name             string     `json:"name"`
	Key              string     `json:"key"` // the name in benchstat lines
	TouchInterval    string     `json:"touch_interval"`
	Seconds          float64    `json:"seconds"`
	SimulatedSeconds float64    `json:"simulated_seconds"` // of the store's clock
	Ops              []opReport `json:"ops"`
	CacheHitPct      float64    `json:"cache_hit_percent"`
	ReturningPct     float64    `json:"returning_percent"` // of successful validations

	// Uses written (Stats.TouchWrites and Stats.TouchesPersisted) during
	// the run and by the flush of Close after it.
	UseWrites          uint64 `json:"use_write_transactions"`
	UsesPersisted      uint64 `json:"uses_persisted"`
	CloseUseWrites     uint64 `json:"close_use_write_transactions"`
	CloseUsesPersisted uint64 `json:"close_uses_persisted"`

	// Bytes passed to write(2) (/proc/self/io wchar) during the run and
	// during Close; -1 where the system does not say.
	BytesWritten      int64 `json:"bytes_written"`
	CloseBytesWritten int64 `json:"close_bytes_written"`
	// Bytes written per persisted use, over what BytesPerUseOver says
	// (the closing flush, or the run and the flush when the mix writes
	// nothing but uses); 0 when no part of the run writes only uses.
	BytesPerUse     float64 `json:"bytes_per_persisted_use"`
	BytesPerUseOver string  `json:"bytes_per_persisted_use_over,omitempty"`
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

func newOpReport(name string, h *hist, rejected uint64, seconds float64) opReport {
	return opReport{
		Op: name, Count: h.n, Rejected: rejected, PerSecond: float64(h.n) / seconds,
		P50: int64(h.quantile(0.5)), P90: int64(h.quantile(0.9)), P99: int64(h.quantile(0.99)),
		P999: int64(h.quantile(0.999)), Max: int64(h.quantile(1)),
	}
}

func (r *runReport) op(name string) *opReport {
	for i := range r.Ops {
		if r.Ops[i].Op == name {
			return &r.Ops[i]
		}
	}
	return nil
}

func newBenchReport(cfg *benchConfig) *benchReport {
	r := &benchReport{
		Machine: thisMachine(), Tokens: cfg.tokens, Policy: cfg.policy.describe(),
		Traffic: string(cfg.traffic), ClockSpeed: cfg.clockSpeed(), ReturningAfter: formatDuration(cfg.returningAfter()),
		Concurrency: cfg.concurrency, DurationSec: cfg.duration.Seconds(), CopyOf: cfg.db,
		Mix: map[string]int{},
	}
	for op, name := range opNames {
		r.Mix[name] = cfg.mix[op]
	}
	return r
}

func (r *benchReport) addRun(cfg *benchConfig, spec runSpec, res *runResult) {
	st0, st1, st2 := res.stats[0], res.stats[1], res.stats[2]
	run := runReport{
		Name: spec.name, Key: spec.key, Seconds: res.seconds, SimulatedSeconds: res.seconds * r.ClockSpeed,
		UseWrites: st1.TouchWrites - st0.TouchWrites, UsesPersisted: st1.TouchesPersisted - st0.TouchesPersisted,
		CloseUseWrites: st2.TouchWrites - st1.TouchWrites, CloseUsesPersisted: st2.TouchesPersisted - st1.TouchesPersisted,
		BytesWritten: -1, CloseBytesWritten: -1,
	}
	run.TouchInterval = cfg.touchName()
	if spec.touch < 0 {
		run.TouchInterval = "every use (negative)"
	}
	if lookups := (st1.CacheHits - st0.CacheHits) + (st1.CacheMisses - st0.CacheMisses); lookups > 0 {
		run.CacheHitPct = 100 * float64(st1.CacheHits-st0.CacheHits) / float64(lookups)
	}
	if n := res.hists[opValidate].n; n > 0 {
		run.ReturningPct = 100 * float64(res.returning) / float64(n)
	}
	for op := range numOps {
		if res.hists[op].n == 0 && cfg.mix[op] == 0 {
			continue
		}
		run.Ops = append(run.Ops, newOpReport(opNames[op], &res.hists[op], res.rejected[op], res.seconds))
	}
	if res.written[0] >= 0 && res.written[1] >= 0 && res.written[2] >= 0 {
		run.BytesWritten, run.CloseBytesWritten = res.written[1]-res.written[0], res.written[2]-res.written[1]
		switch uses := run.UsesPersisted + run.CloseUsesPersisted; {
		case cfg.mix[opIssue] == 0 && cfg.mix[opRevoke] == 0 && uses > 0:
			run.BytesPerUse = float64(run.BytesWritten+run.CloseBytesWritten) / float64(uses)
			run.BytesPerUseOver = "the run and the closing flush (the mix writes nothing but uses)"
		case run.CloseUsesPersisted >= minFlushUses:
			run.BytesPerUse = float64(run.CloseBytesWritten) / float64(run.CloseUsesPersisted)
			run.BytesPerUseOver = "the closing flush, which writes only uses (and bbolt's freelist)"
		}
	}
	r.Runs = append(r.Runs, run)
}

// minFlushUses is how many uses the closing flush must write for its
// bytes to be taken as theirs: Close also writes bbolt's freelist, tens or
// hundreds of KiB, which would swamp a few uses.
const minFlushUses = 1000

// finish works out the figures that compare the runs, the verdict and the
// benchstat lines.
func (r *benchReport) finish() {
	r.BytesPerToken = float64(r.FileBytes) / float64(max(r.TokensInFile, 1))
	r.PeakRSSBytes = peakRSS()
	ts := r.run(runTokenstore).op("validate")
	if ts != nil && r.Floor.PerSecond > 0 {
		r.ValidateVsFloor = ts.PerSecond / r.Floor.PerSecond
	}
	if ev := r.run(runEveryCheck); ts != nil && ev != nil {
		if v := ev.op("validate"); v != nil && v.PerSecond > 0 {
			r.ValidateVsEveryCheck = ts.PerSecond / v.PerSecond
		}
	}
	r.Verdict = r.verdict()
	r.Benchstat = r.benchstatLines()
}

func (r *benchReport) run(name string) *runReport {
	for i := range r.Runs {
		if r.Runs[i].Name == name {
			return &r.Runs[i]
		}
	}
	return nil
}

// verdict sums the report up in a few sentences.
func (r *benchReport) verdict() []string {
	run := r.run(runTokenstore)
	if run == nil {
		return nil
	}
	var out []string
	traffic := map[string]string{
		"returning": "returning-user traffic", "zipf": "returning-user traffic with popular tokens", "hot": "a hot loop over fresh tokens",
	}[r.Traffic]
	ev := r.run(runEveryCheck)
	if v := run.op("validate"); v != nil && r.Mix["validate"] > 0 {
		// The figures below judge the checks that found a live token: say
		// first when there were none, or when they were the few.
		if calls := v.Count + v.Rejected; v.Count == 0 {
			out = append(out, "No check finished with a live token in the run: nothing to judge; give a longer --duration or a slower --speed.")
		} else if v.Rejected > v.Count {
			out = append(out, fmt.Sprintf("%s of %s checks were rejected (the token expired, or another goroutine revoked it), so the figures below describe the few that found a live token: give a slower --speed, a longer policy or fewer revokes.",
				thousands(float64(v.Rejected)), thousands(float64(calls))))
		}
	}
	if v := run.op("validate"); r.Traffic != "hot" && len(out) == 0 && v != nil && v.Count > 0 && run.ReturningPct < 50 {
		// Few tokens checked fast come back within TouchInterval: the run
		// measured repeat checks, the cached path, whatever --traffic says.
		traffic = "this traffic"
		out = append(out, fmt.Sprintf("Only %.0f%% of checks were returning uses: at this rate most checks came back to one of the %s tokens within TouchInterval (%s) of its last check, so this run measured mostly repeat checks, the cached path; more --tokens or a higher --speed make them returning.",
			run.ReturningPct, thousands(float64(r.Tokens)), r.ReturningAfter))
	}
	if v := run.op("validate"); v != nil && v.Count > 0 {
		// Latency first: it compares whatever else the goroutines do.
		// No ratio here: the ones below are of rates (higher is faster),
		// and one of times beside them read the other way round.
		s := fmt.Sprintf("On %s, half of tokenstore's checks took under %s (half of the bare bbolt read floor's under %s)",
			traffic, fmtNs(v.P50), fmtNs(r.Floor.P50))
		if ev != nil {
			if e := ev.op("validate"); e != nil && e.Count > 0 {
				s += fmt.Sprintf(", against %s for a store that writes on every check", fmtNs(e.P50))
			}
		}
		out = append(out, s+fmt.Sprintf("; 1 in 100 took over %s.", fmtNs(v.P99)))

		s = fmt.Sprintf("It checked %s tokens/s", thousands(v.PerSecond))
		if r.Mix["issue"] == 0 && r.Mix["revoke"] == 0 {
			s += fmt.Sprintf(": %s the floor's %s reads/s", ratio(r.ValidateVsFloor), thousands(r.Floor.PerSecond))
			if r.ValidateVsEveryCheck > 0 {
				s += fmt.Sprintf(" and %s a store that writes on every check", ratio(r.ValidateVsEveryCheck))
			}
			s += "."
		} else {
			if r.ValidateVsEveryCheck > 0 {
				s += fmt.Sprintf(", %s a store that writes on every check", ratio(r.ValidateVsEveryCheck))
			}
			s += fmt.Sprintf(", while the same goroutines issued and revoked, each waiting for an fsync: --mix validate=1 measures checks alone against the floor's %s reads/s.",
				thousands(r.Floor.PerSecond))
		}
		out = append(out, s)

		n := v.Count
		if run.UseWrites*2 >= n {
			out = append(out, fmt.Sprintf("%.0f%% of its checks were returning uses, and %s started a write transaction (%s): on this traffic it writes like a store that writes on every check.",
				run.ReturningPct, pct(run.UseWrites, n), thousands(float64(run.UseWrites))))
		} else if run.UseWrites == 0 {
			out = append(out, fmt.Sprintf("%.0f%% of its checks were returning uses, and none waited for a write: Close wrote the uses, %s in %s.",
				run.ReturningPct, thousands(float64(run.CloseUsesPersisted)), count(int(run.CloseUseWrites), "transaction")))
		} else {
			out = append(out, fmt.Sprintf("%.0f%% of its checks were returning uses; %s of them started a write transaction (%s), and Close wrote the other uses in %s.",
				run.ReturningPct, pct(run.UseWrites, n), thousands(float64(run.UseWrites)), count(int(run.CloseUseWrites), "transaction")))
		}
	}
	var waits []string
	for _, name := range []string{"issue", "revoke"} {
		if o := run.op(name); o != nil && o.Count > 0 {
			waits = append(waits, fmt.Sprintf("%s %s", name, fmtNs(o.P50)))
		}
	}
	if len(waits) > 0 {
		out = append(out, fmt.Sprintf("Issue and revoke each wait for an fsync'd write transaction, shared by the calls made meanwhile (p50: %s).", strings.Join(waits, ", ")))
	}
	return out
}

// ratio writes x as "0.52×", "31×".
func ratio(x float64) string {
	if x >= 1000 {
		return thousands(x) + "×"
	}
	if x >= 10 {
		return fmt.Sprintf("%.0f×", x)
	}
	if x >= 0.1 {
		return fmt.Sprintf("%.2g×", x)
	}
	return fmt.Sprintf("%.1g×", x)
}

// pct writes a/b as a percentage.
func pct(a, b uint64) string {
	if b == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(a)/float64(b))
}

// writeBenchText prints the report for someone who has never seen the
// project, then, with benchstat, the "go test -bench" lines.
func writeBenchText(w io.Writer, r *benchReport, benchstat bool) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format+"\n", args...) }
	runDur := time.Duration(r.DurationSec * float64(time.Second))

	p("tokenstore bench: how fast tokenstore checks tokens on this machine")
	p("")
	p("What ran")
	if r.CopyOf != "" {
		p("  %s tokens added to a temporary copy of %s (besides its own), policy %s (removed)", thousands(float64(r.Tokens)), r.CopyOf, r.Policy)
	} else {
		p("  %s tokens, policy %s, in a fresh temporary file (removed)", thousands(float64(r.Tokens)), r.Policy)
	}
	switch r.Traffic {
	case "hot":
		p("  traffic: hot: every token issued just before the runs, checked at random, on the real clock")
	default:
		kind := "returning users"
		if r.Traffic == "zipf" {
			kind = "returning users, a few popular tokens getting most checks (Zipf)"
		}
		p("  traffic: %s: each token last used at a time spread over the policy's window;", kind)
		p("    the store's clock runs %s× real time, so each %s run is %s of traffic", strconv.FormatFloat(r.ClockSpeed, 'g', -1, 64),
			formatDuration(runDur), formatDuration(time.Duration(r.DurationSec*r.ClockSpeed*float64(time.Second)).Round(time.Second)))
	}
	p("  %d goroutines, %s per run; of their calls, %s", r.Concurrency, formatDuration(runDur), mixPercent(r.Mix))
	cpu := ""
	if r.Machine.CPU != "" {
		cpu = r.Machine.CPU + ", "
	}
	p("  machine: %s/%s, %s%d CPUs, %s", r.Machine.GOOS, r.Machine.GOARCH, cpu, r.Machine.CPUs, r.Machine.GoVersion)
	p("  preload: %s tokens in %s (%s tokens/s, IssueBatch)", thousands(float64(r.Preload.Tokens)), fmtSeconds(r.Preload.Seconds), thousands(r.Preload.PerSecond))

	for _, run := range r.Runs {
		p("")
		switch run.Name {
		case runTokenstore:
			p("%s (TouchInterval %s)", run.Name, strings.Replace(run.TouchInterval, " (the default)", ", the default", 1))
		default:
			p("%s (tokenstore with TouchInterval < 0)", run.Name)
		}
		writeOpTable(bw, run.Ops)
		for _, o := range run.Ops {
			if o.Rejected > 0 {
				why := "expired, or revoked by another goroutine meanwhile"
				if o.Op == "revoke" {
					why = "already gone"
				}
				p("  rejected: %s of %s calls found the token %s", thousands(float64(o.Rejected)), o.Op, why)
			}
		}
		if v := run.op("validate"); v != nil {
			p("  returning uses: %.1f%% of validations (token last used %s or more before)", run.ReturningPct, r.ReturningAfter)
			p("  cache hits: %.1f%% of validations", run.CacheHitPct)
		}
		p("  uses written: %s in %s write transactions during the run, %s in %s at Close (Stats.TouchWrites)",
			thousands(float64(run.UsesPersisted)), thousands(float64(run.UseWrites)),
			thousands(float64(run.CloseUsesPersisted)), thousands(float64(run.CloseUseWrites)))
		switch {
		case run.BytesWritten < 0:
			p("  bytes written: unknown (no /proc/self/io on this system)")
		case run.BytesPerUse > 0:
			p("  bytes written per persisted use: %s, over %s", formatBytes(int64(run.BytesPerUse+0.5)), run.BytesPerUseOver)
			p("    (/proc/self/io wchar: %s during the run, %s at Close)", formatBytes(run.BytesWritten), formatBytes(run.CloseBytesWritten))
		default:
			p("  bytes written: %s during the run, %s at Close (/proc/self/io wchar); per persisted use:", formatBytes(run.BytesWritten), formatBytes(run.CloseBytesWritten))
			p("    not separable here, the run's writes mix uses with issues and revokes (--mix validate=1 separates them)")
		}
	}
	p("")
	p("the bbolt read floor (bbolt alone: View+Get of a random token's key in the same file)")
	writeOpTable(bw, []opReport{r.Floor})
	if r.Floor.Rejected > 0 {
		p("  %s reads found no record (tokens swept meanwhile)", thousands(float64(r.Floor.Rejected)))
	}

	p("")
	p("How to read this")
	p("  ops/s          operations finished per second, all goroutines together")
	p("  p50 ... max    how long one call took: half took less than p50, 1 in 100 more than p99")
	p("  returning use  a check of a token idle %s or more (TouchInterval): a user back", r.ReturningAfter)
	p("                 after a pause; the store may have to write the use before answering")
	p("  cache hits     checks answered from the store's memory without a read of the file;")
	p("                 each run starts with an empty cache, as after a restart")
	p("  floor          the fastest one lookup in this file can be here: bbolt with no")
	p("                 hashing, decoding or expiry; 1× is as fast, a cache can beat it")
	p("")
	p("Verdict")
	for _, s := range r.Verdict {
		for i, l := range wrap(s, 92) {
			if i == 0 {
				p("  %s", l)
			} else {
				p("    %s", l)
			}
		}
	}
	p("")
	p("file: %s for %s tokens (%s bytes/token); peak memory (RSS): %s",
		formatBytes(r.FileBytes), thousands(float64(r.TokensInFile)), thousands(r.BytesPerToken), formatBytes(r.PeakRSSBytes))
	if benchstat {
		p("")
		for _, l := range r.Benchstat {
			p("%s", l)
		}
	} else {
		p("(--benchstat adds the figures as \"go test -bench\" lines, for benchstat; --json prints them all)")
	}
	return bw.Flush()
}

// wrap breaks s into lines of at most width bytes, between words.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// writeOpTable writes ops as a table indented by two spaces, operation
// names left-aligned and figures right-aligned, with no trailing spaces
// and no blank rows.
func writeOpTable(w io.Writer, ops []opReport) {
	rows := [][]string{{"op", "ops/s", "p50", "p90", "p99", "p99.9", "max"}}
	for _, o := range ops {
		rows = append(rows, []string{o.Op, thousands(o.PerSecond), fmtNs(o.P50), fmtNs(o.P90), fmtNs(o.P99), fmtNs(o.P999), fmtNs(o.Max)})
	}
	writeTable(w, rows)
}

// writeTable writes rows through text/tabwriter, right-aligned, so that
// each cell gets two spaces on its left (the first column's are the
// indent); the first column is padded here so that it reads left-aligned.
// An empty cell is written "-": right-aligned, it would end its line in
// spaces.
func writeTable(w io.Writer, rows [][]string) {
	width := 0
	for _, row := range rows {
		width = max(width, utf8.RuneCountInString(row[0]))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, c := range row {
			if c == "" {
				c = "-"
			}
			cells[i] = c
		}
		cells[0] = fmt.Sprintf("%-*s", width, cells[0])
		fmt.Fprintf(tw, "%s\t\n", strings.Join(cells, "\t"))
	}
	_ = tw.Flush() // the caller's bufio.Writer reports write errors
}

// benchstatLines are the results as "go test -bench" lines, which
// benchstat reads. ns/op is the run's wall time per operation of that
// kind, as b.RunParallel reports it (1/throughput), not a latency.
func (r *benchReport) benchstatLines() []string {
	out := []string{"goos: " + r.Machine.GOOS, "goarch: " + r.Machine.GOARCH, "pkg: github.com/tokenstore/tokenstore/cmd/tokenstore"}
	if r.Machine.CPU != "" {
		out = append(out, "cpu: "+r.Machine.CPU)
	}
	out = append(out, fmt.Sprintf("tokens: %d", r.Tokens), "policy: "+r.Policy, "traffic: "+r.Traffic,
		fmt.Sprintf("concurrency: %d", r.Concurrency), "mix: "+mixString(r.Mix))
	line := func(run, op string, o opReport) string {
		return fmt.Sprintf("BenchmarkBench/%s/op=%s-%d\t%d\t%.1f ns/op\t%.0f ops/s\t%d p50-ns\t%d p90-ns\t%d p99-ns\t%d p99.9-ns\t%d max-ns",
			run, op, r.Machine.GOMAXPROCS, o.Count, 1e9/o.PerSecond, o.PerSecond, o.P50, o.P90, o.P99, o.P999, o.Max)
	}
	for _, run := range r.Runs {
		for _, o := range run.Ops {
			if o.Count > 0 {
				out = append(out, line(run.Key, o.Op, o))
			}
		}
	}
	if r.Floor.Count > 0 {
		out = append(out, line("bbolt-floor", "read", r.Floor))
	}
	return out
}

func mixString(m map[string]int) string {
	parts := make([]string, 0, numOps)
	for _, name := range opNames {
		parts = append(parts, fmt.Sprintf("%s=%d", name, m[name]))
	}
	return strings.Join(parts, ",")
}

// mixPercent writes the mix as shares: "90% validate, 5% issue, 5% revoke".
func mixPercent(m map[string]int) string {
	total := 0
	for _, n := range m {
		total += n
	}
	var parts []string
	for _, name := range opNames {
		if m[name] > 0 {
			parts = append(parts, strconv.FormatFloat(100*float64(m[name])/float64(total), 'g', 3, 64)+"% "+name)
		}
	}
	return strings.Join(parts, ", ")
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
