package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// These tests run the built binary, as a user does. TOKENSTORE_TEST_BIN
// runs them against another build (say, of an older commit) instead.

// benchBinary builds the command into a temporary directory.
func benchBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("TOKENSTORE_TEST_BIN"); bin != "" {
		return bin
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	bin := filepath.Join(t.TempDir(), "tokenstore")
	out, err := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// runBin runs the binary with TMPDIR set to tmp and returns its exit code
// and output.
func runBin(t *testing.T, bin, tmp string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
		return exitErr.ExitCode(), o.String(), e.String()
	}
	require.NoError(t, err)
	return 0, o.String(), e.String()
}

var (
	benchLine  = regexp.MustCompile(`(?m)^BenchmarkBench/(\S+)/op=(validate|issue|revoke|read)-\d+\t\d+\t[0-9.]+ ns/op\t[0-9]+ ops/s\t\d+ p50-ns\t\d+ p90-ns\t\d+ p99-ns\t\d+ p99\.9-ns\t\d+ max-ns$`)
	goDuration = regexp.MustCompile(`\d+h\d+m\d+s|\dm0s`) // 336h0m0s, 1m0s: Go's form, not the command's
	padded     = regexp.MustCompile(`(?m)[ \t]+$`)
)

// TestBenchBinary builds the command once and runs it as a user does.
func TestBenchBinary(t *testing.T) {
	bin := benchBinary(t)
	t.Run("report", func(t *testing.T) { testBenchReport(t, bin) })
	t.Run("leaves nothing", func(t *testing.T) { testBenchLeavesNothing(t, bin) })
	t.Run("copy has no name", func(t *testing.T) { testBenchCopyHasNoName(t, bin) })
	t.Run("refuses runs that measure nothing", func(t *testing.T) { testBenchRefusesEmptyRuns(t, bin) })
	t.Run("one error prefix for --db", func(t *testing.T) { testBenchDBErrorPrefix(t, bin) })
}

// A run that cannot measure checks is refused up front, with a usage
// error naming the flag, rather than printed with a verdict: --speed 1e9
// ran the store's clock through 31 years in a 1 s run, every token
// expired, and the verdict judged the 2 checks (of 11,411) that found one;
// --duration 1ns finished no call and printed an empty verdict.
func testBenchRefusesEmptyRuns(t *testing.T, bin string) {
	for _, tt := range []struct {
		args []string
		flag string
		want string
	}{
		{[]string{"--speed", "1e9", "--duration", "1s"}, "--speed", "window"},
		{[]string{"--speed", "1e4", "--duration", "1s", "--policy", "sliding(idle=1h, max=2h)"}, "--speed", "window"},
		{[]string{"--duration", "1ns"}, "--duration", "at least"},
		{[]string{"--speed", "1e12"}, "--speed", "at most"},
		// 200,000 goroutines took 11 GiB (a 48 KiB histogram each) and ran
		// 21 s for --duration 200ms.
		{[]string{"--concurrency", "200000", "--duration", "200ms"}, "--concurrency", "at most"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			tmp := t.TempDir()
			args := append([]string{"bench", "--tokens", "200", "--concurrency", "2", "--baseline=false"}, tt.args...)
			code, out, errOut := runBin(t, bin, tmp, args...)
			assert.Equal(t, 2, code, "a usage error; stderr: %s", errOut)
			assert.Contains(t, errOut, tt.flag)
			assert.Contains(t, errOut, tt.want)
			assert.NotContains(t, errOut, "not a positive", "1e12 is positive: the message must say what is wrong")
			assert.NotContains(t, out, "Verdict")
		})
	}
	// --speed within the window still runs.
	code, out, errOut := runBin(t, bin, t.TempDir(), "bench", "--tokens", "200", "--concurrency", "2", "--duration", "100ms", "--speed", "1e6", "--baseline=false")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Verdict")
}

// --db on a file that is not a token store says "tokenstore:" once.
func testBenchDBErrorPrefix(t *testing.T, bin string) {
	tmp := t.TempDir()
	junk := filepath.Join(tmp, "junk.db")
	require.NoError(t, os.WriteFile(junk, bytes.Repeat([]byte("not a bbolt file\n"), 512), 0o600))
	for _, db := range []string{junk, tmp} {
		code, _, errOut := runBin(t, bin, tmp, "bench", "--db", db, "--duration", "100ms")
		assert.Equal(t, 1, code, errOut)
		assert.Equal(t, 1, strings.Count(errOut, "tokenstore:"), "one prefix: %s", errOut)
		assert.Contains(t, errOut, "--db")
	}
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "only junk.db: no copy left behind")
}

// The default report speaks to someone who has never seen the project.
func testBenchReport(t *testing.T, bin string) {
	small := []string{"bench", "--tokens", "2000", "--duration", "200ms", "--concurrency", "4"}

	t.Run("text", func(t *testing.T) {
		tmp := t.TempDir()
		code, out, errOut := runBin(t, bin, tmp, small...)
		require.Equal(t, 0, code, "stderr: %s", errOut)

		// The runs are named for what they are.
		assert.Contains(t, out, "\ntokenstore (TouchInterval 1m, the default)\n")
		assert.Contains(t, out, "\na store that writes on every check (tokenstore with TouchInterval < 0)\n")
		assert.Contains(t, out, "\nthe bbolt read floor (bbolt alone: View+Get of a random token's key in the same file)\n")
		assert.NotContains(t, out, "uses written: 1m0s")
		// What each figure means, and how it compares.
		assert.Contains(t, out, "\nHow to read this\n")
		for _, term := range []string{"ops/s ", "p50 ... max ", "returning use ", "cache hits ", "floor "} {
			assert.Contains(t, out, "\n  "+term, "the legend explains %q", term)
		}
		assert.Regexp(t, `returning uses: [0-9.]+% of validations \(token last used 1m or more before\)`, out)
		assert.Regexp(t, `uses written: [0-9,]+ in [0-9,]+ write transactions during the run, [0-9,]+ in [0-9,]+ at Close`, out)
		assert.Regexp(t, `bytes written( per persisted use)?: `, out)
		// A short verdict at the end, against the floor of the same run.
		_, verdict, ok := strings.Cut(out, "\nVerdict\n")
		require.True(t, ok, "no verdict:\n%s", out)
		verdict = strings.ReplaceAll(verdict, "\n    ", " ") // unwrapped
		assert.Regexp(t, `^  On returning-user traffic, half of tokenstore's checks took under \S+ \(half of the bare bbolt read floor's under \S+\), against \S+ for a store that writes on every check; 1 in 100 took over \S+\.\n`, verdict)
		assert.Regexp(t, `\n  It checked [0-9,]+ tokens/s, [0-9.,]+× a store that writes on every check, while the same goroutines issued and revoked, each waiting for an fsync: --mix validate=1 measures checks alone against the floor's [0-9,]+ reads/s\.\n`, verdict)
		assert.Regexp(t, `\n  [0-9]+% of its checks were returning uses`, verdict)
		// No benchstat lines unless asked.
		assert.NotRegexp(t, `Benchmark|ns/op|goos:`, out)
		assert.Contains(t, out, "--benchstat adds")
		// Policies as the rest of the command prints them.
		assert.Contains(t, out, "policy sliding(idle=14d, max=30d)")
		assert.NotRegexp(t, goDuration, out)
		// No line padded with spaces, blank or not.
		assert.NotRegexp(t, padded, out)
		assert.NotContains(t, out, "\n\n\n")
		// Progress goes to stderr.
		assert.Contains(t, errOut, "preloading 2,000 tokens...\n")
		assert.NotContains(t, out, "preloading")
		assertEmptyDir(t, tmp)
	})

	t.Run("benchstat", func(t *testing.T) {
		tmp := t.TempDir()
		code, out, errOut := runBin(t, bin, tmp, append(small, "--benchstat", "--policy", "sliding(idle=1h, max=720h)")...)
		require.Equal(t, 0, code, "stderr: %s", errOut)
		runs := map[string]bool{}
		for _, l := range benchLine.FindAllStringSubmatch(out, -1) {
			runs[l[1]] = true
		}
		assert.Equal(t, map[string]bool{"tokenstore": true, "write-every-check": true, "bbolt-floor": true}, runs, "benchstat lines:\n%s", out)
		assert.Contains(t, out, "\npolicy: sliding(idle=1h, max=30d)\n")
		assert.Contains(t, out, "policy sliding(idle=1h, max=30d)")
		assert.NotRegexp(t, goDuration, out)
		assert.NotRegexp(t, padded, out)
		assertEmptyDir(t, tmp)
	})

	t.Run("json", func(t *testing.T) {
		tmp := t.TempDir()
		code, out, errOut := runBin(t, bin, tmp, append(small, "--json", "--policy", "absolute")...)
		require.Equal(t, 0, code, "stderr: %s", errOut)
		var rep benchReport
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		assert.Equal(t, "absolute(30d)", rep.Policy)
		assert.Equal(t, []string{"tokenstore", "a store that writes on every check"}, []string{rep.Runs[0].Name, rep.Runs[1].Name})
		assert.NotEmpty(t, rep.Verdict)
		assert.Positive(t, rep.ValidateVsFloor)
		assert.Regexp(t, benchLine, strings.Join(rep.Benchstat, "\n"))
		assert.NotRegexp(t, goDuration, out)
		assertEmptyDir(t, tmp)
	})
}

// No file is left behind, whatever ends the bench: a signal it can catch,
// a reader that goes away (bench | head), or SIGKILL. With --db the copy
// is made beside the production file; nothing but that file may remain.
func testBenchLeavesNothing(t *testing.T, bin string) {

	// prodFile makes a token file holding one token, in a directory of
	// its own.
	prodFile := func(t *testing.T) string {
		path := filepath.Join(t.TempDir(), "tokens.db")
		db, err := tokenstore.Open(path, nil)
		require.NoError(t, err)
		_, _, err = db.Issue(context.Background(), "alice")
		require.NoError(t, err)
		require.NoError(t, db.Close())
		return path
	}

	// Runs that last until the signal: a long preload, a long first run,
	// a short first run and a long second one.
	longPreload := []string{"bench", "--tokens", "200000", "--duration", "1m"}
	longFirst := []string{"bench", "--tokens", "2000", "--duration", "1m"}
	signals := []struct {
		sig   syscall.Signal
		at    string // the progress line after which it is sent
		args  []string
		fresh bool // no --db: a fresh file in TMPDIR
	}{
		{sig: syscall.SIGINT, at: "preloading", args: longPreload},
		{sig: syscall.SIGINT, at: "running", args: longFirst, fresh: true},
		{sig: syscall.SIGTERM, at: "running", args: longFirst},
		{sig: syscall.SIGHUP, at: "preloading", args: longPreload},
		{sig: syscall.SIGHUP, at: "running", args: longFirst},
		{sig: syscall.SIGHUP, at: "running", args: longFirst, fresh: true},
		{sig: syscall.SIGKILL, at: "running", args: longFirst},
	}
	for _, tt := range signals {
		name := tt.sig.String() + " while " + tt.at
		if tt.fresh {
			name += ", a fresh file"
		}
		t.Run(name, func(t *testing.T) {
			prod, tmp := prodFile(t), t.TempDir()
			args := tt.args
			if !tt.fresh {
				args = append(slices.Clone(args), "--db", prod)
			}
			cmd := exec.CommandContext(t.Context(), bin, args...)
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			stderr, err := cmd.StderrPipe()
			require.NoError(t, err)
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			require.NoError(t, cmd.Start())

			var log strings.Builder
			sc := bufio.NewScanner(stderr)
			sent := false
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
				if strings.HasPrefix(sc.Text(), tt.at) {
					require.NoError(t, cmd.Process.Signal(tt.sig))
					sent = true
					break
				}
			}
			require.True(t, sent, "never reached %q:\n%s", tt.at, log.String())
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
			}
			err = cmd.Wait()
			exit, ok := errors.AsType[*exec.ExitError](err)
			require.True(t, ok, "exit: %v\nstderr:\n%s", err, log.String())
			if tt.sig == syscall.SIGKILL {
				assert.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal())
			} else {
				assert.Equal(t, 1, exit.ExitCode(), "stderr:\n%s", log.String())
				assert.Contains(t, log.String(), "tokenstore: interrupted")
			}
			assert.Empty(t, stdout.String(), "no report for an interrupted run")
			assertDirHolds(t, filepath.Dir(prod), "tokens.db")
			assertEmptyDir(t, tmp)
		})
	}

	// With --json, the signal's error is the JSON object every command
	// prints when it fails.
	t.Run("hangup with --json", func(t *testing.T) {
		tmp := t.TempDir()
		cmd := exec.CommandContext(t.Context(), bin, "bench", "--json", "--tokens", "2000", "--duration", "1m")
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		stderr, err := cmd.StderrPipe()
		require.NoError(t, err)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.HasPrefix(sc.Text(), "running") {
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
		for sc.Scan() {
		}
		err = cmd.Wait()
		exit, ok := errors.AsType[*exec.ExitError](err)
		require.True(t, ok, "exit: %v", err)
		assert.Equal(t, 1, exit.ExitCode())
		assert.JSONEq(t, `{"error": {"code": "interrupted", "message": "tokenstore: interrupted by SIGHUP", "exit_code": 1}}`, stdout.String())
		assertEmptyDir(t, tmp)
	})

	// bench ... | head -5: the reader goes away while the bench writes its
	// progress (stderr into the pipe) or its report (stdout).
	pipes := []struct{ name, redirect string }{
		{"progress and report", "2>&1"},
		{"report", "2>/dev/null"},
	}
	for _, tt := range pipes {
		t.Run("broken pipe on "+tt.name, func(t *testing.T) {
			prod, tmp := prodFile(t), t.TempDir()
			script := `"$0" bench --db "$1" --tokens 2000 --duration 200ms --concurrency 2 ` + tt.redirect + ` | head -5`
			cmd := exec.CommandContext(t.Context(), "sh", "-c", script, bin, prod)
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Len(t, strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"), 5, "head printed its 5 lines:\n%s", out)
			assertDirHolds(t, filepath.Dir(prod), "tokens.db")
			assertEmptyDir(t, tmp)
		})
	}
}

// While the bench runs on a copy of --db, the copy is an open file with
// no name: on Linux, /proc/<pid>/fd shows it "(deleted)" beside the
// production file, so no way of ending the process can leave it behind.
func testBenchCopyHasNoName(t *testing.T, bin string) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd on this system")
	}
	dir := t.TempDir()
	prod := filepath.Join(dir, "tokens.db")
	db, err := tokenstore.Open(prod, nil)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	cmd := exec.CommandContext(t.Context(), bin, "bench", "--db", prod, "--tokens", "2000", "--duration", "1m")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "running") {
	}
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/fd")
	require.NoError(t, err)
	var open []string
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, dir) {
			open = append(open, strings.TrimPrefix(target, dir+"/"))
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	for sc.Scan() {
	}
	_ = cmd.Wait()
	require.NotEmpty(t, open)
	for _, name := range open {
		assert.Regexp(t, `^tokens\.db\.bench-\d+ \(deleted\)$`, name)
	}
	assertDirHolds(t, dir, "tokens.db")
}
