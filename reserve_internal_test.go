package tokenstore

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Open sizes the cache's maps by the file's token count, a word of the
// file: a damaged count (here 2^62 on a file of one token) must not make
// Open allocate for more records than the file can hold. With CacheSize
// 2^20 it reserved about 100 MB; with a larger CacheSize, Open died of a
// fatal "out of memory" that no recover reaches.
func TestOpen_DamagedCountReservesOnlyWhatTheFileHolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := Open(path, nil)
	require.NoError(t, err)
	_, _, err = db.Issue(context.Background(), "u")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	b, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, b.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaCount, beAppend64(nil, 1<<62))
	}))
	require.NoError(t, b.Close())

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	db, err = Open(path, &Options{CacheSize: 1 << 20, ReadOnly: true})
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	defer db.Close()
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "bytes allocated by Open")
}
