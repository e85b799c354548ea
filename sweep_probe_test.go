package tokenstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// TestSweepProbe times the sweep of issue 10's workload on a copy of a
// token file: 100,000 tokens issued with Absolute(1s) by 10,000-token
// IssueBatch calls, the clock advanced 2 s, one Sweep; it logs each pass
// (transactions, time, bbolt's write time, bytes written), the scans,
// and the file's size per token. It is a measuring tool, not a test of
// the default run: it runs only when TOKENSTORE_SWEEP_PROBE names a file
// (a fixture BenchmarkStore kept: TOKENSTORE_BENCH_KEEP), which it copies
// and never writes to.
//
//	TOKENSTORE_SWEEP_PROBE=/tmp/keep/fixture-issued-1000000.db go test -run '^TestSweepProbe$' -v .
func TestSweepProbe(t *testing.T) {
	src := os.Getenv("TOKENSTORE_SWEEP_PROBE")
	if src == "" {
		t.Skip("set TOKENSTORE_SWEEP_PROBE to a token file to probe")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "probe.db")
	copyFile(t, src, path)
	var mu sync.Mutex
	now := time.Now().Add(time.Hour).Truncate(time.Millisecond) // after the fixture's frozen instant
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	rec := &txRecorder{}
	db, err := tokenstore.Open(path, &tokenstore.Options{SweepInterval: -1, Now: clock, Logger: slog.New(rec)})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	before, err := os.Stat(path)
	require.NoError(t, err)

	const n, batch = 100_000, 10_000
	reqs := make([]tokenstore.IssueRequest, batch)
	start := time.Now()
	for i := 0; i < n; i += batch {
		for j := range reqs {
			reqs[j] = tokenstore.IssueRequest{Subject: fmt.Sprintf("probe-%06d", (i+j)/4), Policy: tokenstore.Absolute(time.Second)}
		}
		_, err := db.IssueBatch(ctx, reqs)
		require.NoError(t, err)
	}
	issued := time.Since(start)
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	rec.mu.Lock()
	rec.passes, rec.scan = [4]passStats{}, 0 // the issues' transactions are not the sweep's
	rec.mu.Unlock()
	start = time.Now()
	swept, err := db.Sweep(ctx)
	took := time.Since(start)
	require.NoError(t, err)
	require.Equal(t, n, swept)
	after, err := os.Stat(path)
	require.NoError(t, err)
	t.Logf("file %s: %d bytes before the probe (%.0f bytes per token of the fixture), %d after", src, before.Size(), float64(before.Size())/1e6, after.Size())
	t.Logf("issued %d tokens in %d IssueBatch calls in %s", n, n/batch, issued.Round(time.Millisecond))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	t.Logf("sweep of %d tokens: %s; scans %s", swept, took.Round(time.Millisecond), rec.scan.Round(time.Millisecond))
	rec.logPasses(t, 1)
}
