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
	c.next(2 * txTarget) // twice too long: about halves (the fixed part, 0.8 ms, stays)
	assert.InDelta(t, sweepChunkFirst, c.get(), sweepChunkFirst/10)
	n := c.get()
	c.next(100 * txTarget) // far over: at most a quarter
	assert.Equal(t, n/4, c.get())

	for range 20 {
		c.next(time.Hour)
	}
	assert.Equal(t, sweepChunkMin, c.get(), "never under the minimum")
	for range 20 {
		c.next(0)
	}
	assert.Equal(t, sweepChunkMax, c.get(), "never over the maximum")
}

// When the fsyncs alone take longer than the target, the time does not
// say the chunk is too big: the sizer grows it until its own part shows.
func TestChunkSizer_FixedCostOverTarget(t *testing.T) {
	c := chunkSizer{first: 128, lo: 128, hi: 32768}
	fsync := 3 * txTarget / 2 // 12 ms whatever the size
	perItem := time.Microsecond
	for range 30 {
		c.next(fsync + time.Duration(c.get())*perItem)
	}
	// Not the minimum: the fsyncs plus up to about txTarget of work.
	took := fsync + time.Duration(c.get())*perItem
	assert.Greater(t, c.get(), 1000)
	assert.LessOrEqual(t, took, fsync+txTarget, "size %d", c.get())
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
