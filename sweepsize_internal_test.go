package tokenstore

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// nextIO sizes a sweep transaction to hold the writer about sweepHold in
// all, and a slow fsync now and then does not shrink the next chunks: on a
// shared disk a commit's fsyncs took 0.2 to 15 ms from one transaction to
// the next, and the sizer that charged that to the tokens (next) ran the
// records pass of a 100,000-token sweep in ~600 transactions.
func TestChunkSizer_NextIO_SlowFsyncs(t *testing.T) {
	const fsync = time.Millisecond
	const perItem = 20 * time.Microsecond // a record deleted: its share of a leaf rewritten, and the work
	want := int((sweepHold - fsync) / perItem)
	var c, old chunkSizer
	var sizes, oldSizes []int
	for i := range 64 {
		spike := time.Duration(0)
		if i%4 == 3 {
			spike = 14 * time.Millisecond // every fourth commit's fsyncs are slow
		}
		io := fsync + spike + time.Duration(c.get())*perItem/2 // pages written
		c.nextIO(io+time.Duration(c.get())*perItem/2, io)
		old.next(fsync + spike + time.Duration(old.get())*perItem)
		if i >= 32 {
			sizes = append(sizes, c.get())
			oldSizes = append(oldSizes, old.get())
		}
	}
	for _, n := range sizes {
		assert.InDelta(t, want, n, float64(want)/4, "sizes %v", sizes)
	}
	// The sizer before it, on the same disk, kept far smaller chunks.
	assert.Less(t, mean(oldSizes), mean(sizes)/2, "next: %v\nnextIO: %v", oldSizes, sizes)
}

func mean(s []int) float64 {
	t := 0
	for _, n := range s {
		t += n
	}
	return float64(t) / float64(len(s))
}

// A disk whose fsyncs alone take about the target still gets transactions
// of some work: the fixed part is the recent commits' shortest write, and
// the work is sized to at least txTarget/2 beyond it.
func TestChunkSizer_NextIO_SlowDisk(t *testing.T) {
	const fsync = 12 * time.Millisecond
	const perItem = 10 * time.Microsecond
	var c chunkSizer
	for range 40 {
		io := fsync
		c.nextIO(io+time.Duration(c.get())*perItem, io)
	}
	took := fsync + time.Duration(c.get())*perItem
	assert.Greater(t, c.get(), sweepChunkMin)
	assert.LessOrEqual(t, took, fsync+txTarget, "size %d", c.get())
}
