package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHist_Quantile(t *testing.T) {
	var h hist
	assert.Zero(t, h.quantile(0.5))
	for i := 1; i <= 10_000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 10_000 * float64(time.Microsecond)
		assert.InEpsilon(t, want, float64(h.quantile(q)), 0.04, "q=%v", q)
	}
	assert.Equal(t, 10*time.Millisecond, h.quantile(1), "the maximum is exact")

	var small hist
	small.record(3)
	small.record(40)
	assert.Equal(t, time.Duration(3), small.quantile(0), "small values are exact")
	assert.Equal(t, time.Duration(40), small.quantile(1))

	var merged hist
	merged.merge(&h)
	merged.merge(&small)
	assert.Equal(t, h.n+2, merged.n)
	assert.Equal(t, h.max, merged.max)
}

func TestHistBucket_RoundTrips(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, 1 << 62} {
		i := histBucket(v)
		require.Less(t, i, len(hist{}.counts), "v=%d", v)
		mid := histValue(i)
		assert.InEpsilon(t, float64(max(v, 1)), float64(max(mid, 1)), 0.04, "v=%d bucket %d", v, i)
	}
}
