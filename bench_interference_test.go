package tokenstore_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// benchInterference measures what slows the Validates beside a sweep or a
// flush: one goroutine validates random Sliding tokens of the fixture
// (150,000 calls on a freshly opened store, as Sweep/100k-of-1M's do)
// while one kind of background work runs, and reports their p50, p99 and
// p99.9. The kinds are what a sweep or a flush transaction is made of,
// one at a time: none; 4 KB writes each followed by an fsync, from a
// goroutine of this process and from another process (this test binary
// run as TestFsyncLoopChild); 256 KB writes without fsync; a loop of
// allocations; a loop of work in memory only. The report compares each
// p99 to none's: where the other process's fsyncs slow the Validates as
// much as this process's own, the cost is the machine's (its disk's
// interrupts), and no change in how the library schedules its goroutines
// removes it; only fewer fsyncs per second beside the Validates do (the
// flush's pacing, touch.go; pausing the sweep made as many fsyncs over a
// longer time and was removed, sweep.go).
func benchInterference(b *testing.B, get func(*testing.B) *fixture) {
	fx := get(b)
	sliding := fx.sliding()
	write := func(size int, sync bool) func(*testing.B) func() {
		return goLoad(func(b *testing.B) func(stop <-chan struct{}) error {
			path := filepath.Join(b.TempDir(), "load")
			return func(stop <-chan struct{}) error {
				f, err := os.Create(path)
				if err != nil {
					return err
				}
				defer f.Close()
				buf := make([]byte, size)
				for {
					select {
					case <-stop:
						return nil
					default:
					}
					if _, err := f.WriteAt(buf, 0); err != nil {
						return err
					}
					if sync {
						if err := f.Sync(); err != nil {
							return err
						}
					}
				}
			}
		})
	}
	loads := []struct {
		name  string
		start func(*testing.B) (stop func()) // nil: none
	}{
		{"none", nil},
		{"fsync-4k-same-process", write(4<<10, true)},
		{"fsync-4k-other-process", func(b *testing.B) func() {
			return startFsyncLoop(b, filepath.Join(b.TempDir(), "load"))
		}},
		{"write-256k-no-fsync", write(256<<10, false)},
		{"alloc", goLoad(func(*testing.B) func(stop <-chan struct{}) error {
			return func(stop <-chan struct{}) error {
				var keep [][]byte
				for {
					select {
					case <-stop:
						return nil
					default:
					}
					for range 1000 {
						keep = append(keep, make([]byte, 2048))
					}
					if len(keep) > 100_000 {
						keep = nil
					}
				}
			}
		})},
		{"memory-only", goLoad(func(*testing.B) func(stop <-chan struct{}) error {
			return func(stop <-chan struct{}) error {
				buf := make([]byte, 64<<20)
				for {
					select {
					case <-stop:
						return nil
					default:
					}
					for i := 0; i < len(buf); i += 64 {
						buf[i]++
					}
				}
			}
		})},
	}
	var none time.Duration
	for _, l := range loads {
		b.Run(l.name, func(b *testing.B) {
			var all []time.Duration
			for b.Loop() {
				b.StopTimer()
				db := openBench(b, fx.copyOf(b, "interference"), nil)
				stop := func() {}
				if l.start != nil {
					stop = l.start(b) // also stopped by b's cleanup, should the loop fail midway
				}
				b.StartTimer()
				all = append(all, validateLatencies(b, db, sliding, 150_000, nil)...)
				b.StopTimer()
				stop()
				require.NoError(b, db.Close())
				b.StartTimer()
			}
			p99 := percentile(all, 0.99)
			if l.start == nil {
				none = p99
			}
			b.ReportMetric(float64(percentile(all, 0.5).Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(percentile(all, 0.999).Nanoseconds()), "p999-ns")
			if none > 0 {
				b.ReportMetric(float64(p99)/float64(none), "p99-x-none")
			}
		})
	}
}

// goLoad is a load run by a goroutine of this process: the load's
// function, made in the benchmark's goroutine, runs until stop is closed.
// What starts it returns what stops it and waits for it, also registered
// as b's cleanup, so that a benchmark failing midway leaves no goroutine
// running; the load's error fails the benchmark there, in its own
// goroutine (FailNow may not be called from another).
func goLoad(mk func(*testing.B) func(stop <-chan struct{}) error) func(*testing.B) func() {
	return func(b *testing.B) func() {
		run := mk(b)
		stopc, done := make(chan struct{}), make(chan struct{})
		var err error
		go func() { defer close(done); err = run(stopc) }()
		stop := sync.OnceFunc(func() {
			close(stopc)
			<-done
			require.NoError(b, err, "the load")
		})
		b.Cleanup(stop)
		return stop
	}
}

// startFsyncLoop starts TestFsyncLoopChild in another process, writing
// and fsyncing path, once it has made its first fsync, and returns what
// kills it and waits for it, also registered as tb's cleanup: a benchmark
// failing midway leaves no process behind. The child reads its stdin, a
// pipe only this process holds open, and exits when it ends: however this
// process ends (the test binary's timeout, a kill -9), no child goes on
// fsyncing for ever, reparented to init, on a machine others share.
func startFsyncLoop(tb testing.TB, path string) (stop func()) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFsyncLoopChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fsyncLoopEnv+"="+path)
	in, err := cmd.StdinPipe()
	require.NoError(tb, err)
	out, err := cmd.StdoutPipe()
	require.NoError(tb, err)
	require.NoError(tb, cmd.Start())
	stop = sync.OnceFunc(func() {
		_ = cmd.Process.Kill()
		_ = in.Close()
		_ = cmd.Wait() // killed
	})
	tb.Cleanup(stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(tb, err, "the child's first line")
	require.Equal(tb, fsyncLoopReady+"\n", line)
	return stop
}

// fsyncLoopEnv names the file TestFsyncLoopChild writes; fsyncLoopReady
// is the line it prints once its first fsync is done.
const (
	fsyncLoopEnv   = "TOKENSTORE_FSYNC_LOOP"
	fsyncLoopReady = "fsync loop running"
)

// TestFsyncLoopChild is benchInterference's other process: with
// $TOKENSTORE_FSYNC_LOOP set, it writes 4 KB to that file and fsyncs it in
// a loop until killed, or until its stdin ends (startFsyncLoop: the
// parent is gone). Otherwise it does nothing.
func TestFsyncLoopChild(t *testing.T) {
	path := os.Getenv(fsyncLoopEnv)
	if path == "" {
		return // not the child: nothing to do
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0) // the parent is gone, or closed it
	}()
	f, err := os.Create(path)
	require.NoError(t, err)
	buf := make([]byte, 4<<10)
	for first := true; ; first = false {
		_, err := f.WriteAt(buf, 0)
		require.NoError(t, err)
		require.NoError(t, f.Sync())
		if first {
			fmt.Println(fsyncLoopReady)
		}
	}
}

// The child of Store/Interference exits when its parent goes, however
// the parent goes: here its stdin is closed, as the parent's exit closes
// it, and nothing kills it. It ran on, orphaned, fsyncing for ever,
// when the benchmark failed or timed out before it was stopped.
func TestFsyncLoopChild_ExitsWithItsParent(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestFsyncLoopChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fsyncLoopEnv+"="+filepath.Join(t.TempDir(), "load"))
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, fsyncLoopReady+"\n", line, "the child is looping")
	go func() { exited <- cmd.Wait() }()
	require.NoError(t, in.Close())
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		require.NoError(t, err, "it exits on its own, not killed")
	case <-time.After(30 * time.Second): // a watchdog, not a synchronisation
		t.Fatal("the child still runs 30 s after its stdin closed")
	}
}
