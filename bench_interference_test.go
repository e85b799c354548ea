package tokenstore_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
// sweep's pacing, sweep.go).
func benchInterference(b *testing.B, get func(*testing.B) *fixture) {
	fx := get(b)
	sliding := fx.sliding()
	write := func(size int, sync bool) func(stop <-chan struct{}) {
		return func(stop <-chan struct{}) {
			f, err := os.Create(filepath.Join(b.TempDir(), "load"))
			require.NoError(b, err)
			defer f.Close()
			buf := make([]byte, size)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := f.WriteAt(buf, 0)
				require.NoError(b, err)
				if sync {
					require.NoError(b, f.Sync())
				}
			}
		}
	}
	loads := []struct {
		name string
		run  func(stop <-chan struct{})
	}{
		{"none", nil},
		{"fsync-4k-same-process", write(4<<10, true)},
		{"fsync-4k-other-process", func(stop <-chan struct{}) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFsyncLoopChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "TOKENSTORE_FSYNC_LOOP="+filepath.Join(b.TempDir(), "load"))
			require.NoError(b, cmd.Start())
			<-stop
			cancel()
			_ = cmd.Wait() // killed
		}},
		{"write-256k-no-fsync", write(256<<10, false)},
		{"alloc", func(stop <-chan struct{}) {
			var keep [][]byte
			for {
				select {
				case <-stop:
					return
				default:
				}
				for range 1000 {
					keep = append(keep, make([]byte, 2048))
				}
				if len(keep) > 100_000 {
					keep = nil
				}
			}
		}},
		{"memory-only", func(stop <-chan struct{}) {
			buf := make([]byte, 64<<20)
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < len(buf); i += 64 {
					buf[i]++
				}
			}
		}},
	}
	var none time.Duration
	for _, l := range loads {
		b.Run(l.name, func(b *testing.B) {
			var all []time.Duration
			for b.Loop() {
				b.StopTimer()
				db := openBench(b, fx.copyOf(b, "interference"), nil)
				stop, done := make(chan struct{}), make(chan struct{})
				go func() {
					defer close(done)
					if l.run != nil {
						l.run(stop)
					}
				}()
				b.StartTimer()
				all = append(all, validateLatencies(b, db, sliding, 150_000, nil)...)
				b.StopTimer()
				close(stop)
				<-done
				require.NoError(b, db.Close())
				b.StartTimer()
			}
			p99 := percentile(all, 0.99)
			if l.run == nil {
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

// TestFsyncLoopChild is benchInterference's other process: with
// $TOKENSTORE_FSYNC_LOOP set, it writes 4 KB to that file and fsyncs it in
// a loop until killed. Otherwise it does nothing.
func TestFsyncLoopChild(t *testing.T) {
	path := os.Getenv("TOKENSTORE_FSYNC_LOOP")
	if path == "" {
		return // not the child: nothing to do
	}
	f, err := os.Create(path)
	require.NoError(t, err)
	buf := make([]byte, 4<<10)
	for {
		_, err := f.WriteAt(buf, 0)
		require.NoError(t, err)
		require.NoError(t, f.Sync())
	}
}
