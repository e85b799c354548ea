package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// runCLI runs the command line in-process and returns its exit code and
// output. TMPDIR is a fresh directory, returned so that tests can check
// that the bench left nothing behind.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr, tmp string) {
	t.Helper()
	tmp = t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String(), tmp
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	assertDirHolds(t, dir)
}

// assertDirHolds asserts that dir holds exactly the files names.
func assertDirHolds(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	got := []string{}
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if names == nil {
		names = []string{}
	}
	assert.Equal(t, names, got, "files in %s", dir)
}

func benchJSON(t *testing.T, args ...string) benchReport {
	t.Helper()
	code, out, errOut, tmp := runCLI(t, append([]string{"bench", "--json"}, args...)...)
	require.Equal(t, 0, code, "stderr: %s", errOut)
	var rep benchReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assertEmptyDir(t, tmp)
	return rep
}

func TestRun_Bench_JSON(t *testing.T) {
	rep := benchJSON(t, "--tokens", "1000", "--duration", "100ms", "--concurrency", "3",
		"--mix", "validate=100", "--policy", "absolute", "--touch-interval", "10s")
	assert.Equal(t, 1000, rep.Tokens)
	assert.Equal(t, "absolute(30d)", rep.Policy, "as the rest of the command prints it")
	assert.Equal(t, "returning", rep.Traffic)
	assert.Equal(t, "10s", rep.ReturningAfter)
	assert.Equal(t, map[string]int{"validate": 100, "issue": 0, "revoke": 0}, rep.Mix)
	assert.Equal(t, 1000, rep.Preload.Tokens)
	require.Len(t, rep.Runs, 2)
	assert.Equal(t, "tokenstore", rep.Runs[0].Name)
	assert.Equal(t, "10s", rep.Runs[0].TouchInterval)
	assert.Equal(t, "a store that writes on every check", rep.Runs[1].Name)
	for _, run := range rep.Runs {
		require.Len(t, run.Ops, 1, "operations with no weight are left out")
		o := run.Ops[0]
		assert.Equal(t, "validate", o.Op)
		assert.Positive(t, o.Count)
		assert.Positive(t, o.PerSecond)
		assert.True(t, o.P50 <= o.P90 && o.P90 <= o.P99 && o.P99 <= o.P999 && o.P999 <= o.Max, "%+v", o)
		assert.InDelta(t, run.Seconds*3600, run.SimulatedSeconds, 1e-6)
	}
	assert.Zero(t, rep.Runs[0].UseWrites, "absolute tokens: no check waits for a write")
	assert.Positive(t, rep.Runs[1].UseWrites, "every check writes")
	assert.Positive(t, rep.Runs[1].BytesPerUse, "a validate-only mix: the run's bytes are the uses'")
	assert.Equal(t, "read", rep.Floor.Op)
	assert.Positive(t, rep.Floor.Count)
	assert.Zero(t, rep.Floor.Rejected, "every read of the floor finds its record")
	assert.Positive(t, rep.ValidateVsFloor)
	assert.Positive(t, rep.ValidateVsEveryCheck)
	assert.NotEmpty(t, rep.Verdict)
	assert.EqualValues(t, 1000, rep.TokensInFile)
	assert.Positive(t, rep.FileBytes)
	assert.Positive(t, rep.PeakRSSBytes)
	assert.Contains(t, strings.Join(rep.Benchstat, "\n"), "BenchmarkBench/tokenstore/op=validate-", "--json carries the benchstat lines")
}

// The traffic models do what they say: returning traffic is mostly
// returning uses, a hot loop over fresh tokens almost none, and Zipf
// popularity fewer than uniform picks. --speed 1e6 (a minute of the
// store's time every 60 µs) keeps the share of returning uses high however
// fast the library is: below half would take 57 million checks/s over
// 5,000 tokens.
func TestRun_Bench_Traffic(t *testing.T) {
	ret := benchJSON(t, "--tokens", "5000", "--duration", "200ms", "--concurrency", "4", "--mix", "validate=1", "--baseline=false", "--speed", "1e6")
	require.Len(t, ret.Runs, 1)
	r := ret.Runs[0]
	assert.Greater(t, r.ReturningPct, 50.0, "returning traffic: most checks come after an idle spell")
	assert.Positive(t, r.UsesPersisted+r.CloseUsesPersisted, "the uses reach the file, in the run or at Close")
	assert.Positive(t, r.BytesPerUse)
	assert.Equal(t, "the run and the closing flush (the mix writes nothing but uses)", r.BytesPerUseOver)

	hot := benchJSON(t, "--tokens", "2000", "--duration", "200ms", "--concurrency", "4", "--traffic", "hot", "--mix", "validate=1")
	assert.Less(t, hot.Runs[0].ReturningPct, 5.0, "a hot loop over fresh tokens: no idle spell")
	assert.EqualValues(t, 1, hot.ClockSpeed)
	assert.Zero(t, hot.Runs[0].UseWrites, "no check of a fresh token waits for a write")
	assert.Positive(t, hot.Runs[0].CloseUsesPersisted, "the real clock runs: the uses are newer than the tokens")
	ev := hot.Runs[1]
	assert.InDelta(t, ev.Ops[0].Count, ev.UseWrites, float64(ev.Ops[0].Count)/10, "every check writes")

	zipf := benchJSON(t, "--tokens", "5000", "--duration", "200ms", "--concurrency", "4", "--mix", "validate=1", "--traffic", "zipf", "--baseline=false", "--speed", "1e6")
	assert.Less(t, zipf.Runs[0].ReturningPct, ret.Runs[0].ReturningPct, "popular tokens come back within TouchInterval")
}

// The store's clock runs an hour per second unless that would expire a
// short policy's tokens by the thousand during a run.
func TestBenchConfig_ClockSpeed(t *testing.T) {
	cfg := defaultBenchConfig()
	assert.EqualValues(t, 3600, cfg.clockSpeed())
	require.NoError(t, cfg.policy.Set("sliding(idle=1h)"))
	assert.EqualValues(t, 120, cfg.clockSpeed(), "3 s runs span 6 minutes, a tenth of the idle hour")
	cfg.speed = 42
	assert.EqualValues(t, 42, cfg.clockSpeed(), "--speed decides")
	cfg.traffic = trafficHot
	assert.EqualValues(t, 1, cfg.clockSpeed(), "hot traffic runs on the real clock")
}

func TestRun_Bench_NoBaseline(t *testing.T) {
	rep := benchJSON(t, "--tokens", "500", "--duration", "50ms", "--concurrency", "2", "--baseline=false")
	assert.Len(t, rep.Runs, 1)
	assert.Zero(t, rep.ValidateVsEveryCheck)
	assert.Positive(t, rep.Floor.Count, "the floor is always measured")
}

// --db runs on a copy made beside the file, removes it, and leaves the
// file as it was.
func TestRun_Bench_DB(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.db")
	db, err := tokenstore.Open(path, nil)
	require.NoError(t, err)
	_, _, err = db.Issue(context.Background(), "alice")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	rep := benchJSON(t, "--db", path, "--tokens", "500", "--duration", "50ms", "--concurrency", "2", "--mix", "validate=1")
	assert.Equal(t, path, rep.CopyOf)
	assert.EqualValues(t, 501, rep.TokensInFile, "the copy holds the file's token and the preloaded ones")

	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(before, after), "the file itself is not written")
	assertDirHolds(t, dir, "tokens.db")

	// The text said "500 tokens, ... in a temporary copy of tokens.db", as
	// if the copy held 500: the 500 are added to the file's own.
	code, out, errOut, _ := runCLI(t, "bench", "--db", path, "--tokens", "500", "--duration", "50ms", "--concurrency", "2", "--mix", "validate=1", "--baseline=false")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "500 tokens added to a temporary copy of "+path+" (besides its own)")
}

func TestRun_Bench_Usage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--mix", "validate=0"}, "every weight is 0"},
		{[]string{"bench", "--mix", "lookup=1"}, "want validate=N"},
		{[]string{"bench", "--tokens", "0"}, "not a positive whole number"},
		{[]string{"bench", "--concurrency", "-3"}, "not a positive whole number"},
		{[]string{"bench", "--duration", "0s"}, "not a positive duration"},
		{[]string{"bench", "--policy", "forever"}, "want sliding, absolute"},
		{[]string{"bench", "--traffic", "cold"}, "want returning, zipf or hot"},
		{[]string{"bench", "--speed", "0"}, "not a positive number"},
		{[]string{"bench", "extra"}, "takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut, tmp := runCLI(t, tt.args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tt.want)
			assertEmptyDir(t, tmp)
		})
	}
}

func TestRun_Bench_MissingDB(t *testing.T) {
	code, _, errOut, _ := runCLI(t, "bench", "--db", filepath.Join(t.TempDir(), "nope.db"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "--db")
	assert.Contains(t, errOut, "no such file")
}

func TestWriteTable_NoTrailingSpaces(t *testing.T) {
	var b bytes.Buffer
	writeTable(&b, [][]string{{"op", "ops/s", "p50"}, {"validate", "1,234", "3.4µs"}, {"read", "812,345", ""}})
	assert.Equal(t, "  op          ops/s    p50\n  validate    1,234  3.4µs\n  read      812,345      -\n", b.String())
}

func TestRatio(t *testing.T) {
	assert.Equal(t, "0.003×", ratio(0.00312))
	assert.Equal(t, "0.52×", ratio(0.523))
	assert.Equal(t, "6.6×", ratio(6.61))
	assert.Equal(t, "31×", ratio(31.2))
	assert.Equal(t, "9,346×", ratio(9346.2))
}

func TestWrap(t *testing.T) {
	assert.Equal(t, []string{"aaa bbb", "ccc"}, wrap("aaa bbb ccc", 7))
	assert.Equal(t, []string{"aaaaaaaaaa", "b"}, wrap("aaaaaaaaaa b", 4), "a long word stays whole")
	assert.Empty(t, wrap("", 10))
}

// When most checks found no live token (they expired under a fast clock,
// or another goroutine revoked them), the verdict says so first: its
// figures describe rejections, not the checks the command is for.
func TestBenchVerdict_MostlyRejected(t *testing.T) {
	r := benchReport{Traffic: "returning", Mix: map[string]int{"validate": 90, "issue": 5, "revoke": 5},
		Runs:  []runReport{{Name: runTokenstore, Ops: []opReport{{Op: "validate", Count: 2, Rejected: 11_409, P50: 3740, P99: 3740}}}},
		Floor: opReport{Op: "read", Count: 1000, P50: 600}}
	v := r.verdict()
	require.NotEmpty(t, v)
	assert.Contains(t, v[0], "11,409 of 11,411")
	assert.Contains(t, v[0], "rejected")

	r.Runs[0].Ops[0] = opReport{Op: "validate", Count: 1000, Rejected: 10, P50: 900, P99: 5000}
	assert.NotContains(t, r.verdict()[0], "rejected", "a few rejections are the mix's revokes")

	r.Runs[0].Ops[0] = opReport{Op: "validate"}
	v = r.verdict()
	require.NotEmpty(t, v)
	assert.Contains(t, v[0], "No check finished")
}

// Returning traffic with few tokens checked fast is mostly repeat checks
// within TouchInterval (--tokens 20000 --mix validate=1: 17% returning,
// 99% cache hits); the verdict must not call it returning-user traffic.
func TestBenchVerdict_FewReturningUses(t *testing.T) {
	r := benchReport{Traffic: "returning", Tokens: 20_000, Mix: map[string]int{"validate": 1},
		Runs: []runReport{{Name: runTokenstore, ReturningPct: 16.8,
			Ops: []opReport{{Op: "validate", Count: 2_000_000, PerSecond: 2_000_000, P50: 616, P99: 3740}}}},
		Floor: opReport{Op: "read", Count: 1000, P50: 1360, PerSecond: 850_000}}
	v := r.verdict()
	require.NotEmpty(t, v)
	assert.NotContains(t, strings.Join(v, " "), "On returning-user traffic")
	assert.Contains(t, v[0], "Only 17% of checks were returning uses")
	assert.Contains(t, v[0], "--tokens")

	r.Runs[0].ReturningPct = 99.5
	assert.Contains(t, r.verdict()[0], "On returning-user traffic")
}
