package tokenstore_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// benchFile issues n tokens into a new file, in batches.
func benchFile(b *testing.B, n int) *tokenstore.DB {
	b.Helper()
	db, err := tokenstore.Open(filepath.Join(b.TempDir(), "tokens.db"), &tokenstore.Options{SweepInterval: -1})
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close() })
	for n > 0 {
		reqs := make([]tokenstore.IssueRequest, min(n, 10000))
		for i := range reqs {
			reqs[i] = tokenstore.IssueRequest{Subject: "user", Metadata: map[string]string{"scope": "read write"}}
		}
		_, err := db.IssueBatch(b.Context(), reqs)
		require.NoError(b, err)
		n -= len(reqs)
	}
	return db
}

// BenchmarkForEach walks 100k tokens. ForEach reads 256 records per read
// transaction (issue 12): the cost of re-seeking between batches shows
// here beside List's one transaction over the same tokens.
func BenchmarkForEach(b *testing.B) {
	db := benchFile(b, 100_000)
	b.Run("ForEach-100k", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			require.NoError(b, db.ForEach(b.Context(), func(tokenstore.Info) error { n++; return nil }))
			require.Equal(b, 100_000, n)
		}
	})
	b.Run("List-100k-one-transaction", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l, err := db.List(b.Context(), "user")
			require.NoError(b, err)
			require.Len(b, l, 100_000)
		}
	})
}

// BenchmarkBackup copies a 100k-token file to io.Discard. Backup first
// copies it into a temporary file beside the store (issue 12: a slow
// consumer must not hold a read transaction); the baseline is a plain
// copy of the file, the least any backup costs.
func BenchmarkBackup(b *testing.B) {
	db := benchFile(b, 100_000)
	st, err := os.Stat(db.Path())
	require.NoError(b, err)
	b.Run("Backup-to-discard", func(b *testing.B) {
		b.SetBytes(st.Size())
		b.ReportAllocs()
		for b.Loop() {
			_, err := db.Backup(b.Context(), io.Discard)
			require.NoError(b, err)
		}
	})
	b.Run("baseline-file-copy", func(b *testing.B) {
		b.SetBytes(st.Size())
		b.ReportAllocs()
		for b.Loop() {
			f, err := os.Open(db.Path())
			require.NoError(b, err)
			_, err = io.Copy(io.Discard, f)
			require.NoError(b, err)
			require.NoError(b, f.Close())
		}
	})
}
