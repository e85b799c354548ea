package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func TestBenchMix_Set(t *testing.T) {
	tests := []struct {
		give    string
		want    benchMix
		wantErr string
	}{
		{give: "validate=90,issue=5,revoke=5", want: benchMix{90, 5, 5}},
		{give: " revoke=1 , validate=3 ", want: benchMix{3, 0, 1}},
		{give: "validate=100", want: benchMix{100, 0, 0}},
		{give: "issue=1", want: benchMix{0, 1, 0}},
		{give: "validate=0", wantErr: "every weight is 0"},
		{give: "validate=-1", wantErr: "0 or more"},
		{give: "validate=x", wantErr: "whole number"},
		{give: "lookup=5", wantErr: "want validate=N"},
		{give: "validate", wantErr: "want validate=N"},
		{give: "validate=1,validate=2", wantErr: "twice"},
		{give: "", wantErr: "want validate=N"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			var m benchMix
			err := m.Set(tt.give)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, m)
		})
	}
}

func TestBenchMix_Pick(t *testing.T) {
	m := benchMix{90, 5, 5}
	r := newTestRand()
	var got [numOps]int
	for range 100_000 {
		got[m.pick(r)]++
	}
	assert.InDelta(t, 90_000, got[opValidate], 1_000)
	assert.InDelta(t, 5_000, got[opIssue], 500)
	assert.InDelta(t, 5_000, got[opRevoke], 500)

	only := benchMix{0, 1, 0}
	for range 100 {
		assert.Equal(t, opIssue, only.pick(r))
	}
}

func TestPolicyFlag_Set(t *testing.T) {
	tests := []struct {
		give, want string
		wantErr    bool
	}{
		{give: "sliding", want: "sliding(idle=336h0m0s, max=720h0m0s)"},
		{give: "absolute", want: "absolute(720h0m0s)"},
		{give: "absolute(24h)", want: "absolute(24h0m0s)"},
		{give: "sliding(idle=1h, max=720h)", want: "sliding(idle=1h0m0s, max=720h0m0s)"},
		{give: "forever", wantErr: true},
		{give: "absolute(0s)", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			var p policyFlag
			err := p.Set(tt.give)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.describe())
		})
	}
}

func TestHist_Quantile(t *testing.T) {
	var h hist
	assert.Zero(t, h.quantile(0.5))
	for i := 1; i <= 10_000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 10_000 * float64(time.Microsecond)
		assert.InEpsilon(t, want, float64(h.quantile(q)), 0.04, "q=%v", q)
	}
	assert.Equal(t, 10*time.Millisecond, h.quantile(1), "the maximum is exact")

	var small hist
	small.record(3)
	small.record(40)
	assert.Equal(t, time.Duration(3), small.quantile(0), "small values are exact")
	assert.Equal(t, time.Duration(40), small.quantile(1))

	var merged hist
	merged.merge(&h)
	merged.merge(&small)
	assert.Equal(t, h.n+2, merged.n)
	assert.Equal(t, h.max, merged.max)
}

func TestHistBucket_RoundTrips(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, 1 << 62} {
		i := histBucket(v)
		require.Less(t, i, len(hist{}.counts), "v=%d", v)
		mid := histValue(i)
		assert.InEpsilon(t, float64(max(v, 1)), float64(max(mid, 1)), 0.04, "v=%d bucket %d", v, i)
	}
}

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
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Empty(t, names, "files left in %s", dir)
}

var benchLine = regexp.MustCompile(`(?m)^BenchmarkBench/(touch=\S+)/op=(validate|issue|revoke)-\d+\t\d+\t[0-9.]+ ns/op\t[0-9]+ ops/s\t\d+ p50-ns\t\d+ p90-ns\t\d+ p99-ns\t\d+ p99\.9-ns\t\d+ max-ns$`)

func TestRun_Bench_Text(t *testing.T) {
	code, out, errOut, tmp := runCLI(t, "bench", "--tokens", "2000", "--duration", "150ms", "--concurrency", "4")
	require.Equal(t, 0, code, "stderr: %s", errOut)

	assert.Contains(t, out, "tokenstore bench: 2,000 tokens, sliding(idle=336h0m0s, max=720h0m0s), 4 goroutines")
	assert.Regexp(t, `preload: 2,000 tokens in \S+ \([0-9,]+ tokens/s, IssueBatch\)`, out)
	for _, col := range []string{"ops/s", "p50", "p90", "p99", "p99.9", "max"} {
		assert.Contains(t, out, col)
	}
	assert.Regexp(t, `validations: \d+x the throughput of a write per validation`, out)
	assert.Regexp(t, `file: [0-9.]+ (KiB|MiB), [0-9,]+ tokens, \d+ bytes/token; peak memory \(RSS\): `, out)
	assert.Contains(t, out, "\ngoos: ")

	lines := benchLine.FindAllStringSubmatch(out, -1)
	runs := map[string]bool{}
	for _, l := range lines {
		runs[l[1]] = true
	}
	assert.Equal(t, map[string]bool{"touch=1m0s": true, "touch=every-use": true}, runs, "benchstat lines:\n%s", out)
	assert.GreaterOrEqual(t, len(lines), 4)

	// Progress goes to stderr, as plain lines when it is not a terminal.
	assert.Contains(t, errOut, "preloading 2,000 tokens...\n")
	assert.Contains(t, errOut, "running touch=1m0s")
	assert.NotContains(t, out, "preloading")
	assertEmptyDir(t, tmp)
}

func TestRun_Bench_JSON(t *testing.T) {
	code, out, errOut, tmp := runCLI(t, "bench", "--tokens", "1000", "--duration", "100ms", "--concurrency", "3",
		"--mix", "validate=100", "--policy", "absolute", "--touch-interval", "10s", "--json")
	require.Equal(t, 0, code, "stderr: %s", errOut)

	var rep benchReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.Equal(t, 1000, rep.Tokens)
	assert.Equal(t, "absolute(720h0m0s)", rep.Policy)
	assert.Equal(t, map[string]int{"validate": 100, "issue": 0, "revoke": 0}, rep.Mix)
	assert.Equal(t, 1000, rep.Preload.Tokens)
	require.Len(t, rep.Runs, 2)
	assert.Equal(t, "touch=10s", rep.Runs[0].Name)
	assert.Equal(t, "touch=every-use", rep.Runs[1].Name)
	for _, run := range rep.Runs {
		require.Len(t, run.Ops, 1, "operations with no weight are left out")
		o := run.Ops[0]
		assert.Equal(t, "validate", o.Op)
		assert.Positive(t, o.Count)
		assert.Positive(t, o.PerSecond)
		assert.True(t, o.P50 <= o.P90 && o.P90 <= o.P99 && o.P99 <= o.P999 && o.P999 <= o.Max, "%+v", o)
	}
	assert.Zero(t, rep.Runs[0].UseWrites, "absolute tokens: no use is written at once")
	assert.Positive(t, rep.Runs[1].UseWrites)
	assert.Positive(t, rep.ValidateRatio)
	assert.EqualValues(t, 1000, rep.TokensInFile)
	assert.Positive(t, rep.FileBytes)
	assert.Positive(t, rep.PeakRSSBytes)
	assertEmptyDir(t, tmp)
}

func TestRun_Bench_NoBaseline(t *testing.T) {
	code, out, errOut, _ := runCLI(t, "bench", "--tokens", "500", "--duration", "50ms", "--concurrency", "2", "--baseline=false", "--json")
	require.Equal(t, 0, code, "stderr: %s", errOut)
	var rep benchReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Len(t, rep.Runs, 1)
	assert.Zero(t, rep.ValidateRatio)
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

	code, out, errOut, tmp := runCLI(t, "bench", "--db", path, "--tokens", "500", "--duration", "50ms", "--concurrency", "2", "--mix", "validate=1", "--json")
	require.Equal(t, 0, code, "stderr: %s", errOut)
	var rep benchReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Equal(t, path, rep.CopyOf)
	assert.EqualValues(t, 501, rep.TokensInFile, "the copy holds the file's token and the preloaded ones")

	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(before, after), "the file itself is not written")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the copy is removed")
	assertEmptyDir(t, tmp)
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

// A real SIGINT to a built binary, while it preloads and while it runs,
// leaves no temporary file behind.
func TestBench_Interrupt(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "github.com/tokenstore/tokenstore")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	for _, at := range []string{"preloading", "running"} {
		t.Run(at, func(t *testing.T) {
			tmp := t.TempDir()
			cmd := exec.Command(bin, "bench", "--tokens", "300000", "--duration", "1m")
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			stderr, err := cmd.StderrPipe()
			require.NoError(t, err)
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			require.NoError(t, cmd.Start())

			var log strings.Builder
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
				if strings.HasPrefix(sc.Text(), at) {
					// The temporary file exists now.
					entries, err := os.ReadDir(tmp)
					require.NoError(t, err)
					require.NotEmpty(t, entries)
					require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
					break
				}
			}
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
			}
			err = cmd.Wait()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "exit: %v\nstderr:\n%s", err, log.String())
			assert.Equal(t, 1, exit.ExitCode())
			assert.Contains(t, log.String(), "tokenstore: interrupted")
			assert.Empty(t, stdout.String(), "no report for an interrupted run")
			assertEmptyDir(t, tmp)
		})
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
