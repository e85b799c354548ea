package tokenstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func TestChunkSizer_Next(t *testing.T) {
	var c chunkSizer
	assert.Equal(t, sweepChunkFirst, c.get())

	c.next(txTarget / 10) // far under the target: at most doubles
	assert.Equal(t, 2*sweepChunkFirst, c.get())
	c.next(txTarget) // on target: stays
	assert.Equal(t, 2*sweepChunkFirst, c.get())
	c.next(2 * txTarget) // twice too long: halves
	assert.Equal(t, sweepChunkFirst, c.get())
	c.next(100 * txTarget) // far over: at most a quarter
	assert.Equal(t, sweepChunkFirst/4, c.get())

	for range 20 {
		c.next(time.Hour)
	}
	assert.Equal(t, sweepChunkMin, c.get(), "never under the minimum")
	for range 20 {
		c.next(0)
	}
	assert.Equal(t, sweepChunkMax, c.get(), "never over the maximum")
}

// A sweep that finds nothing due commits nothing: no fsync on an idle
// store every SweepInterval.
func TestDB_Sweep_NothingDueWritesNothing(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{SweepInterval: -1})
	require.NoError(t, err)
	defer db.Close()
	_, _, err = db.Issue(context.Background(), "alice")
	require.NoError(t, err)
	txid := func() (id int) {
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }))
		return id
	}
	before := txid()
	n, err := db.Sweep(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, before, txid())
}
