//go:build unix

package tokenstore_test

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tokenstore/tokenstore"
)

// BenchmarkOpenFile times a read-only Open and Close of an existing file,
// $TOKENSTORE_OPEN_FILE (a copy of the 1M-token fixture, say: BenchmarkStore
// keeps one with TOKENSTORE_BENCH_KEEP), which it never writes. Open walks
// the B+tree's shape (treeSound), so its cost grows with the file:
//
//	TOKENSTORE_OPEN_FILE=/tmp/fx.db go test -run '^$' -bench OpenFile -benchtime 3x .
//
// warm: the file in the page cache (after the first iteration). cold: the
// page cache dropped before each iteration (sync; echo 3 >
// /proc/sys/vm/drop_caches, outside the timer), which needs root; it is
// skipped without. Dropping the cache slows whatever else runs on the
// machine for a moment.
func BenchmarkOpenFile(b *testing.B) {
	path := os.Getenv("TOKENSTORE_OPEN_FILE")
	if path == "" {
		b.Skip("set TOKENSTORE_OPEN_FILE to the file to open")
	}
	open := func(b *testing.B) {
		db, err := tokenstore.Open(path, &tokenstore.Options{ReadOnly: true, SweepInterval: -1})
		require.NoError(b, err)
		require.NoError(b, db.Close())
	}
	b.Run("warm", func(b *testing.B) {
		open(b) // fill the page cache
		b.ReportAllocs()
		for b.Loop() {
			open(b)
		}
	})
	b.Run("cold", func(b *testing.B) {
		drop := func() error {
			f, err := os.OpenFile("/proc/sys/vm/drop_caches", os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteString("3\n")
			return errors.Join(err, f.Close())
		}
		if err := drop(); err != nil {
			b.Skipf("cannot drop the page cache: %v", err)
		}
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			syscall.Sync()
			require.NoError(b, drop())
			b.StartTimer()
			open(b)
		}
	})
}
